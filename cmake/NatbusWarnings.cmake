# Warning flags for natbus' own targets (never forced on consumers).
function(natbus_set_warnings target)
  if(MSVC)
    target_compile_options(${target} PRIVATE /W4)
    if(NATBUS_WERROR)
      target_compile_options(${target} PRIVATE /WX)
    endif()
    return()
  endif()
  target_compile_options(${target} PRIVATE
    -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast -Wcast-align
    -Woverloaded-virtual -Wconversion -Wsign-conversion -Wnull-dereference -Wdouble-promotion
    -Wformat=2 -Wimplicit-fallthrough -Wmissing-declarations)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(${target} PRIVATE -Wmisleading-indentation -Wduplicated-cond
      -Wduplicated-branches -Wlogical-op)
  endif()
  if(NATBUS_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
