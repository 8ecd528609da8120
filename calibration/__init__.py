"""ecgedge.calibration"""
