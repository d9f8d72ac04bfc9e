# Install rules: headers, library, CMake package (config + version + targets + cnats finder),
# and a pkg-config file.
include(CMakePackageConfigHelpers)

set(NATBUS_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/natbus" CACHE STRING
    "Installation directory for natbus' CMake package files, relative to the prefix")

install(TARGETS natbus EXPORT natbus-targets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY include/natbus DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.hpp")
install(FILES "${PROJECT_BINARY_DIR}/include/natbus/version.hpp"
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/natbus)

install(EXPORT natbus-targets NAMESPACE natbus:: DESTINATION ${NATBUS_CMAKE_DIR}
  FILE natbus-targets.cmake)

configure_package_config_file(cmake/natbus-config.cmake.in
  "${PROJECT_BINARY_DIR}/natbus-config.cmake"
  INSTALL_DESTINATION ${NATBUS_CMAKE_DIR})
write_basic_package_version_file("${PROJECT_BINARY_DIR}/natbus-config-version.cmake"
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES
  "${PROJECT_BINARY_DIR}/natbus-config.cmake"
  "${PROJECT_BINARY_DIR}/natbus-config-version.cmake"
  cmake/FindNatbusCnats.cmake
  cmake/NatbusCompilerChecks.cmake
  DESTINATION ${NATBUS_CMAKE_DIR})

# pkg-config: natbus' public headers use nlohmann_json and {fmt}; cnats and zlib are private.
get_target_property(_natbus_type natbus TYPE)
if(_natbus_type STREQUAL "STATIC_LIBRARY")
  set(NATBUS_PC_LIBS_PRIVATE "-lpthread")
  set(NATBUS_PC_REQUIRES_PRIVATE "libnats zlib")
else()
  set(NATBUS_PC_LIBS_PRIVATE "")
  set(NATBUS_PC_REQUIRES_PRIVATE "libnats zlib")
endif()
# Relocatable: the prefix is found from the .pc file's own folder (a package installed anywhere,
# or unpacked with dpkg -x, works).
file(RELATIVE_PATH NATBUS_PC_TO_PREFIX "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
string(REGEX REPLACE "/$" "" NATBUS_PC_TO_PREFIX "${NATBUS_PC_TO_PREFIX}")
configure_file(cmake/natbus.pc.in "${PROJECT_BINARY_DIR}/natbus.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/natbus.pc" DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
