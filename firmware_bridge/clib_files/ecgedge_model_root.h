/* ecgedge model library @NAME@: the API is src/ecgedge_model.h (src/ is the include path CMake, Make,
 * Zephyr and Arduino use); this forwarder serves projects that put the library's root folder on theirs. */
#include "src/ecgedge_model.h"
