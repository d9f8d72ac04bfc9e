// natbus without nlohmann's, <functional> and the thread headers: the bus, messages as text
// and bytes, push, pull and core subscriptions, requests, replies, configuration, errors,
// metrics and tasks. A file that includes only this compiles in about a third of the time of
// <natbus/natbus.hpp> (README, "Headers"). Add <natbus/json.hpp> for JSON payloads, typed
// handlers and serve(), <natbus/stream_info.hpp> for create_stream / stream_info /
// consumer_info, <natbus/log.hpp> for log sinks, <natbus/thread.hpp> and
// <natbus/blocking_bus.hpp> for other threads.
#pragma once

#include "natbus/bus.hpp"
#include "natbus/config.hpp"
#include "natbus/error.hpp"
#include "natbus/message.hpp"
#include "natbus/metrics.hpp"
#include "natbus/options.hpp"
#include "natbus/task.hpp"
#include "natbus/version.hpp"
