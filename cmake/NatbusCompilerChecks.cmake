# natbus needs C++20 coroutines. GCC 12 (Debian bookworm's compiler) miscompiles a few coroutine
# patterns that clang and GCC 13+ get right; natbus' API is shaped so that natural call sites are
# safe (see README, "Compiler notes"). This module is also shipped with the package so that
# consumers get the same warning.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  if(NOT NATBUS_GCC12_WARNED)
    message(WARNING
      "natbus: GCC ${CMAKE_CXX_COMPILER_VERSION} miscompiles some coroutine code. Inside a co_await "
      "expression it destroys aggregate temporaries and lambda closures twice, and rejects braced "
      "lists that need a backing array; and a co_await directly in an if/switch condition breaks "
      "the coroutine. natbus' options are safe to pass inline, but name your handlers, build "
      "messages before co_await, and write `bool ok = co_await f(); if (ok)` instead of "
      "`if (co_await f())`. See natbus' README, 'Compiler notes'. clang or GCC >= 13 are fine.")
    set(NATBUS_GCC12_WARNED ON CACHE INTERNAL "")
  endif()
endif()
