# A Debian package of the development files: `cpack -G DEB` in a build folder gives
# libnatbus-dev_<version>_<arch>.deb with the headers, the library, the CMake package and the
# pkg-config file, depending on the Debian packages natbus is built and linked with. The
# test package_deb installs it into a temporary root and builds a project against it.
set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "libnatbus-dev")
set(CPACK_PACKAGE_VENDOR "natbus")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION} (development files)")
set(CPACK_PACKAGE_CONTACT "natbus developers <natbus@localhost>")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_DEBIAN_PACKAGE_NAME "libnatbus-dev")
set(CPACK_DEBIAN_FILE_NAME "DEB-DEFAULT")
set(CPACK_DEBIAN_PACKAGE_SECTION "libdevel")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
# What a project that links natbus needs: cnats (and its OpenSSL), zlib, and the header-only or
# shared libraries natbus' public headers use.
set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "libnats-dev (>= 3.4), libssl-dev, zlib1g-dev, libfmt-dev (>= 8), nlohmann-json3-dev (>= 3.10)")
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "C++20 coroutine client library for NATS JetStream, a thin RAII wrapper over the official\n NATS C client. Headers, static library, CMake package (find_package(natbus)) and pkg-config file.")
set(CPACK_SOURCE_IGNORE_FILES "/build/;/\\\\.git/")
include(CPack)
