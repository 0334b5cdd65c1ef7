# lamina's dependencies, found the same way by the build tree and by the
# installed package config (laminaConfig.cmake includes this file).
#
# Each call is a macro argument so that the config can use find_dependency
# (which propagates REQUIRED/QUIET) and the build tree find_package.
macro(lamina_find_dependencies finder)
  cmake_language(CALL ${finder} Eigen3 3.4 NO_MODULE)
  cmake_language(CALL ${finder} xsimd 8)
  cmake_language(CALL ${finder} OpenMP COMPONENTS CXX)
  cmake_language(CALL ${finder} ZLIB)
  # JSON headers of model files (Debian's nlohmann-json3-dev).
  cmake_language(CALL ${finder} nlohmann_json 3)
  # stb_image_write (Debian's libstb-dev) encodes the report's PNGs.
  cmake_language(CALL ${finder} PkgConfig)
  if(NOT TARGET PkgConfig::LAMINA_STB)
    pkg_check_modules(LAMINA_STB REQUIRED QUIET IMPORTED_TARGET GLOBAL stb)
  endif()
  # Debian's libxsimd-dev exports a target that links "xtl" (xsimd's optional
  # xtl-complex support) without finding it, so every consumer would try -lxtl.
  # lamina does not use xtl: an empty stand-in target satisfies the link.
  if(NOT TARGET xtl)
    add_library(xtl INTERFACE IMPORTED)
  endif()
endmacro()
