// Forks test child processes from one long-lived thread. PR_SET_PDEATHSIG (children die with
// the test process) fires when the *thread* that forked exits, not the process: a server
// restarted from a short-lived helper thread would be killed when that thread ends.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace natbus::testing {

/// Forks and execs argv (argv[0] is a path) with `envp` (empty: inherit), stdout (and stderr
/// when `stderr_too`) on `out_fd`, stdin on /dev/null. The child gets SIGKILL when the test
/// process ends. Returns the pid; throws HarnessError when fork fails.
pid_t spawn_process(const std::vector<std::string>& argv, const std::vector<std::string>& envp, int out_fd, bool stderr_too,
                    bool new_process_group);

}  // namespace natbus::testing
