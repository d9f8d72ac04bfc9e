#include <nats/nats.h>

#include "natbus/version.hpp"

namespace natbus {

const char* version() noexcept { return kVersion; }

const char* cnats_version() noexcept { return nats_GetVersion(); }

}  // namespace natbus
