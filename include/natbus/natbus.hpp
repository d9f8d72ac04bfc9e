// natbus: C++20 coroutines for NATS JetStream, over the official NATS C client (cnats).
// One include for everything:  #include <natbus/natbus.hpp>   Link: natbus::natbus
// For files that publish and consume without JSON payloads, the lighter <natbus/lite.hpp>
// compiles in about a third of the time (README, "Headers").
#pragma once

#include "natbus/blocking_bus.hpp"
#include "natbus/bus.hpp"
#include "natbus/config.hpp"
#include "natbus/error.hpp"
#include "natbus/json.hpp"
#include "natbus/kv.hpp"
#include "natbus/log.hpp"
#include "natbus/message.hpp"
#include "natbus/metrics.hpp"
#include "natbus/object_store.hpp"
#include "natbus/options.hpp"
#include "natbus/service.hpp"
#include "natbus/stream_info.hpp"
#include "natbus/task.hpp"
#include "natbus/thread.hpp"
#include "natbus/version.hpp"
