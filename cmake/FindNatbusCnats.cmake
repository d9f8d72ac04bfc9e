# FindNatbusCnats
# ---------------
# Finds the NATS C client (cnats / nats.c) and defines ONE imported target, natbus::cnats.
#
# Why not plain find_package(cnats)? Debian's cnats-config.cmake (libnats-dev 3.4.1) declares a
# cnats::nats_static target whose libnats_static.a the package does not ship, and CMake aborts the
# whole configure with a FATAL_ERROR when that config is loaded. So:
#   1. a cnats CMake config is used only after a throw-away child configure proved it loads;
#      natbus then links cnats::nats (shared) or cnats::nats_static (NATBUS_CNATS_STATIC=ON);
#   2. otherwise pkg-config's libnats;
#   3. otherwise find_path/find_library for nats.h and libnats.
# Threads (and OpenSSL when cnats is static) are added, since cnats' own config forgets them.
#
# Result: NatbusCnats_FOUND, NatbusCnats_VERSION, NatbusCnats_METHOD (config|pkg-config|library),
# target natbus::cnats. Used by natbus' build and by the installed natbus-config.cmake.

if(TARGET natbus::cnats)
  set(NatbusCnats_FOUND TRUE)
  return()
endif()

option(NATBUS_CNATS_STATIC "Link cnats statically (cnats::nats_static)" OFF)
find_package(Threads QUIET)

set(_nbc_target "")
set(_nbc_version "")
set(NatbusCnats_METHOD "")

# --- 1. a cnats CMake config, only if it loads cleanly -------------------------------------------
if(NOT DEFINED NATBUS_CNATS_CONFIG_OK)
  set(_nbc_probe "${CMAKE_BINARY_DIR}/natbus-cnats-probe")
  file(MAKE_DIRECTORY "${_nbc_probe}/src")
  file(WRITE "${_nbc_probe}/src/CMakeLists.txt"
    "cmake_minimum_required(VERSION 3.16)\nproject(natbus_cnats_probe NONE)\n"
    "find_package(cnats CONFIG REQUIRED)\n"
    "file(WRITE \"\${CMAKE_BINARY_DIR}/version.txt\" \"\${cnats_VERSION}\")\n")
  set(_nbc_args "")
  foreach(_v CMAKE_PREFIX_PATH CMAKE_FIND_ROOT_PATH cnats_DIR CMAKE_LIBRARY_ARCHITECTURE)
    if(DEFINED ${_v})
      string(REPLACE ";" "\\;" _val "${${_v}}")
      list(APPEND _nbc_args "-D${_v}=${_val}")
    endif()
  endforeach()
  execute_process(
    COMMAND "${CMAKE_COMMAND}" -S "${_nbc_probe}/src" -B "${_nbc_probe}/build" ${_nbc_args}
    RESULT_VARIABLE _nbc_rc OUTPUT_QUIET ERROR_QUIET TIMEOUT 60)
  if(_nbc_rc EQUAL 0)
    set(NATBUS_CNATS_CONFIG_OK ON CACHE INTERNAL "cnats' CMake config loads")
  else()
    set(NATBUS_CNATS_CONFIG_OK OFF CACHE INTERNAL "cnats' CMake config loads")
  endif()
endif()

if(NATBUS_CNATS_CONFIG_OK)
  find_package(cnats CONFIG QUIET)
  if(NATBUS_CNATS_STATIC AND TARGET cnats::nats_static)
    set(_nbc_target cnats::nats_static)
  elseif(TARGET cnats::nats)
    set(_nbc_target cnats::nats)
  elseif(TARGET cnats::nats_static)
    set(_nbc_target cnats::nats_static)
  endif()
  if(_nbc_target)
    set(NatbusCnats_METHOD config)
    set(_nbc_version "${cnats_VERSION}")
  endif()
endif()

# --- 2. pkg-config ---------------------------------------------------------------------------------
if(NOT _nbc_target)
  find_package(PkgConfig QUIET)
  if(PKG_CONFIG_FOUND)
    if(NATBUS_CNATS_STATIC)
      set(_nbc_static_arg STATIC)
    endif()
    pkg_check_modules(NATBUS_PC_NATS QUIET IMPORTED_TARGET libnats)
    if(NATBUS_PC_NATS_FOUND)
      set(_nbc_target PkgConfig::NATBUS_PC_NATS)
      set(NatbusCnats_METHOD pkg-config)
      set(_nbc_version "${NATBUS_PC_NATS_VERSION}")
    endif()
  endif()
endif()

# --- 3. plain search ---------------------------------------------------------------------------
if(NOT _nbc_target)
  find_path(NATBUS_CNATS_INCLUDE_DIR NAMES nats/nats.h)
  if(NATBUS_CNATS_STATIC)
    find_library(NATBUS_CNATS_LIBRARY NAMES nats_static libnats_static.a nats)
  else()
    find_library(NATBUS_CNATS_LIBRARY NAMES nats)
  endif()
  if(NATBUS_CNATS_INCLUDE_DIR AND NATBUS_CNATS_LIBRARY)
    add_library(natbus_cnats_library UNKNOWN IMPORTED)
    set_target_properties(natbus_cnats_library PROPERTIES
      IMPORTED_LOCATION "${NATBUS_CNATS_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${NATBUS_CNATS_INCLUDE_DIR}")
    set(_nbc_target natbus_cnats_library)
    set(NatbusCnats_METHOD library)
    if(EXISTS "${NATBUS_CNATS_INCLUDE_DIR}/nats/version.h")
      file(STRINGS "${NATBUS_CNATS_INCLUDE_DIR}/nats/version.h" _nbc_vline
           REGEX "^#define NATS_VERSION_STRING")
      string(REGEX MATCH "[0-9]+\\.[0-9]+\\.[0-9]+" _nbc_version "${_nbc_vline}")
    endif()
  endif()
endif()

if(_nbc_target)
  add_library(natbus::cnats INTERFACE IMPORTED)
  set(_nbc_libs ${_nbc_target})
  if(TARGET Threads::Threads)
    list(APPEND _nbc_libs Threads::Threads)
  endif()
  if(NATBUS_CNATS_STATIC)
    find_package(OpenSSL QUIET)
    if(OpenSSL_FOUND)
      list(APPEND _nbc_libs OpenSSL::SSL OpenSSL::Crypto)
    endif()
  endif()
  set_property(TARGET natbus::cnats PROPERTY INTERFACE_LINK_LIBRARIES "${_nbc_libs}")
endif()

set(NatbusCnats_VERSION "${_nbc_version}")
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(NatbusCnats
  REQUIRED_VARS _nbc_target
  VERSION_VAR NatbusCnats_VERSION
  FAIL_MESSAGE "cnats (the NATS C client) not found: install libnats-dev (Debian) or set CMAKE_PREFIX_PATH")
if(NatbusCnats_FOUND AND NOT NatbusCnats_FIND_QUIETLY)
  message(STATUS "natbus: cnats ${NatbusCnats_VERSION} via ${NatbusCnats_METHOD} (${_nbc_target})")
endif()
unset(_nbc_target)
unset(_nbc_libs)
