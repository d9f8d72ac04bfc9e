// A child process for tests (a second "pod"): started with its stdout on a pipe, read line by
// line with deadlines, signalled, and always killed and reaped on destruction.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace natbus::testing {

class ChildProcess {
 public:
  /// Starts argv[0] (a path) with `env` added to the environment. Dies with the test process.
  ChildProcess(std::vector<std::string> argv, std::vector<std::string> env = {});
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  /// Next line of stdout, or nullopt when none comes before `timeout` (or the process ended).
  std::optional<std::string> read_line(std::chrono::milliseconds timeout);
  /// Reads lines until one starts with `prefix` (returned) or `timeout` passes; every line read
  /// is kept in output().
  std::optional<std::string> wait_for_line(const std::string& prefix, std::chrono::milliseconds timeout);
  void signal(int signo);
  /// Waits for the exit (bounded); returns the exit status, or -signal, or nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  [[nodiscard]] const std::vector<std::string>& output() const noexcept { return lines_; }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string buffer_;
  std::vector<std::string> lines_;
  bool eof_ = false;
};

}  // namespace natbus::testing
