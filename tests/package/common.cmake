# Shared by the package test drivers: required variables, a fresh WORK_DIR, and run(), which
# executes a command, fails the test with its output when it fails, and leaves its stdout in
# run_out.
macro(package_test_prologue)
  foreach(v ${ARGN})
    if(NOT DEFINED ${v})
      message(FATAL_ERROR "${CMAKE_CURRENT_LIST_FILE}: ${v} is not set")
    endif()
  endforeach()
  file(REMOVE_RECURSE "${WORK_DIR}")
  file(MAKE_DIRECTORY "${WORK_DIR}")
endmacro()

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(run_out "${out}" PARENT_SCOPE)
endfunction()
