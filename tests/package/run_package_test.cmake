# ctest driver: proves natbus can be consumed as a package.
#   MODE=find_package     install the build into WORK_DIR/prefix, build tests/package against it
#   MODE=add_subdirectory build tests/package with natbus' sources added as a subdirectory
# Also checks that no installed natbus header includes a cnats header.
include("${CMAKE_CURRENT_LIST_DIR}/common.cmake")
package_test_prologue(SOURCE_DIR BUILD_DIR WORK_DIR MODE CXX)

set(flags "")
if(SANITIZE)
  set(flags "-DCMAKE_CXX_FLAGS=-fsanitize=${SANITIZE}" "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=${SANITIZE}")
endif()

if(MODE STREQUAL "find_package")
  run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${WORK_DIR}/prefix")
  # GNUInstallDirs may choose lib, lib64 or a multiarch folder: look for the names anywhere.
  foreach(name natbus-config.cmake natbus-config-version.cmake natbus-targets.cmake FindNatbusCnats.cmake
               natbus.pc natbus.hpp version.hpp)
    file(GLOB_RECURSE found "${WORK_DIR}/prefix/*/${name}")
    if(NOT found)
      message(FATAL_ERROR "not installed: ${name}")
    endif()
    if(name STREQUAL "natbus.pc")
      get_filename_component(pc_dir "${found}" DIRECTORY)
    endif()
  endforeach()
  file(GLOB_RECURSE headers "${WORK_DIR}/prefix/include/natbus/*.hpp")
  foreach(h IN LISTS headers)
    file(STRINGS "${h}" hits REGEX "#[ \t]*include[ \t]*[<\"]nats")
    if(hits)
      message(FATAL_ERROR "public header ${h} includes cnats: ${hits}")
    endif()
  endforeach()
  run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/package" -B "${WORK_DIR}/build"
      "-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix" "-DCMAKE_CXX_COMPILER=${CXX}" ${flags})
else()
  run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/package" -B "${WORK_DIR}/build"
      "-DNATBUS_SOURCE_DIR=${SOURCE_DIR}" "-DCMAKE_CXX_COMPILER=${CXX}" ${flags})
endif()
run(${CMAKE_COMMAND} --build "${WORK_DIR}/build" --parallel 2)
run("${WORK_DIR}/build/consumer")
message("consumer: ${run_out}")
if(MODE STREQUAL "find_package")
  # pkg-config users find natbus too.
  execute_process(COMMAND ${CMAKE_COMMAND} -E env "PKG_CONFIG_PATH=${pc_dir}" pkg-config --cflags --libs natbus
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0 OR NOT out MATCHES "-lnatbus")
    message(FATAL_ERROR "pkg-config natbus failed (${rc}): ${out} ${err}")
  endif()
  message("pkg-config natbus: ${out}")
endif()
file(REMOVE_RECURSE "${WORK_DIR}")
