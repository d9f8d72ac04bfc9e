// natbus: C++20 coroutines for NATS JetStream, over the official NATS C client (cnats).
// One include for everything:  #include <natbus/natbus.hpp>   Link: natbus::natbus
#pragma once

#include "natbus/blocking_bus.hpp"
#include "natbus/bus.hpp"
#include "natbus/config.hpp"
#include "natbus/error.hpp"
#include "natbus/log.hpp"
#include "natbus/message.hpp"
#include "natbus/metrics.hpp"
#include "natbus/options.hpp"
#include "natbus/task.hpp"
#include "natbus/thread.hpp"
#include "natbus/version.hpp"
