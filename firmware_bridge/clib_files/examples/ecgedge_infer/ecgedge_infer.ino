// ecgedge model @NAME@ on an Arduino board: check the constants at boot, then infer one window a second.
// Fill window_mv with ECG_MODEL_WINDOW_SAMPLES filtered lead-I samples in millivolts (@FILTERS@);
// this sketch infers a flat line. window_mv takes 4 x ECG_MODEL_WINDOW_SAMPLES bytes of RAM.
#include <ecgedge_model.h>

static float window_mv[ECG_MODEL_WINDOW_SAMPLES];

void setup() {
  Serial.begin(115200);
  while (!Serial) {
  }
  Serial.print("ecgedge model " ECG_MODEL_NAME ", constants ");
  Serial.println(ecg_model_verify() ? "ok" : "CORRUPT");
}

void loop() {
  float out[ECG_MODEL_OUTPUT_SIZE];
  unsigned long t0 = micros();
  int clipped = ecg_model_run_mv(window_mv, out);
  unsigned long dt = micros() - t0;
  for (int i = 0; i < ECG_MODEL_OUTPUT_SIZE; ++i) {
    Serial.print(out[i], 4);
    Serial.print(' ');
  }
  Serial.print("clipped ");
  Serial.print(clipped);
  Serial.print(" us ");
  Serial.println(dt);
  delay(1000);
}
