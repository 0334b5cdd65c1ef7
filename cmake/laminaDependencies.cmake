# lamina's dependencies, found the same way by the build tree and by the
# installed package config (laminaConfig.cmake includes this file).
#
# Each call is a macro argument so that the config can use find_dependency
# (which propagates REQUIRED/QUIET) and the build tree find_package.
#
# Which part of lamina needs what:
#   Eigen 3.4, xsimd 8, OpenMP  tensors, kernels, layers, the model, training
#   zlib                        .gz input (data/) and the model files' CRC-32 (io/)
#   nlohmann-json 3             the model files and checkpoints (io/)
#   stb_image_write             the training report's PNGs (report/)
#
# The only targets this file creates are in lamina's namespace (lamina::xsimd,
# lamina::stb), so that it never takes a name from the project that uses lamina.
macro(lamina_find_dependencies finder)
  cmake_language(CALL ${finder} Eigen3 3.4 NO_MODULE)
  cmake_language(CALL ${finder} xsimd 8)
  cmake_language(CALL ${finder} OpenMP COMPONENTS CXX)
  cmake_language(CALL ${finder} ZLIB)
  cmake_language(CALL ${finder} nlohmann_json 3)
  _lamina_xsimd_target()
  _lamina_find_stb()
endmacro()

# lamina::xsimd: xsimd's usage requirements without its link to "xtl".
# Debian's libxsimd-dev exports a target that links "xtl" (xsimd's optional
# xtl-complex support) without finding it, so every program that links the
# xsimd target would try -lxtl. lamina does not use xtl: it takes xsimd's
# include directories, definitions, options and features, and keeps the
# target "xtl" out of the link unless a target of that name exists (the
# project found xtl itself).
macro(_lamina_xsimd_target)
  if(NOT TARGET lamina::xsimd)
    add_library(lamina::xsimd INTERFACE IMPORTED)
    foreach(_lamina_property INTERFACE_INCLUDE_DIRECTORIES INTERFACE_COMPILE_DEFINITIONS
            INTERFACE_COMPILE_OPTIONS INTERFACE_COMPILE_FEATURES INTERFACE_LINK_LIBRARIES)
      get_target_property(_lamina_value xsimd ${_lamina_property})
      if(_lamina_value)
        if(_lamina_property STREQUAL "INTERFACE_LINK_LIBRARIES" AND NOT TARGET xtl)
          list(REMOVE_ITEM _lamina_value xtl)
        endif()
        set_property(TARGET lamina::xsimd PROPERTY ${_lamina_property} "${_lamina_value}")
      endif()
    endforeach()
    unset(_lamina_property)
    unset(_lamina_value)
  endif()
endmacro()

# lamina::stb: stb_image_write's header and, where the system has one, the
# library that holds its implementation (Debian's libstb-dev ships libstb).
# The header is found with find_path, helped by pkg-config where it is
# installed, so the package also configures where stb is only a directory of
# headers (vcpkg, conda, a checkout): set LAMINA_STB_INCLUDE_DIR to the
# directory holding stb_image_write.h if it is not found. Without a libstb,
# define STB_IMAGE_WRITE_IMPLEMENTATION in one .cpp file of a program that
# uses lamina's report (lamina never defines it).
macro(_lamina_find_stb)
  if(NOT TARGET lamina::stb)
    find_package(PkgConfig QUIET)
    if(PKG_CONFIG_FOUND)
      pkg_check_modules(_LAMINA_PC_STB QUIET stb)
    endif()
    find_path(LAMINA_STB_INCLUDE_DIR stb_image_write.h
      HINTS ${_LAMINA_PC_STB_INCLUDE_DIRS}
      PATH_SUFFIXES stb
      DOC "Directory that holds stb_image_write.h (Debian: libstb-dev)")
    find_library(LAMINA_STB_LIBRARY NAMES stb
      HINTS ${_LAMINA_PC_STB_LIBRARY_DIRS}
      DOC "Library holding stb's implementation (Debian's libstb); optional")
    if(NOT LAMINA_STB_INCLUDE_DIR)
      set(_lamina_stb_message
        "lamina: stb_image_write.h not found (Debian: apt install libstb-dev; elsewhere set LAMINA_STB_INCLUDE_DIR to the directory that holds it)")
      # Inside find_dependency, report through the package's NOT_FOUND message;
      # in the build tree, stop.
      if(CMAKE_FIND_PACKAGE_NAME STREQUAL "lamina")
        set(lamina_NOT_FOUND_MESSAGE "${_lamina_stb_message}")
        set(lamina_FOUND FALSE)
        return()
      endif()
      message(FATAL_ERROR "${_lamina_stb_message}")
    endif()
    add_library(lamina::stb INTERFACE IMPORTED)
    set_property(TARGET lamina::stb PROPERTY INTERFACE_INCLUDE_DIRECTORIES "${LAMINA_STB_INCLUDE_DIR}")
    if(LAMINA_STB_LIBRARY)
      set_property(TARGET lamina::stb PROPERTY INTERFACE_LINK_LIBRARIES "${LAMINA_STB_LIBRARY}")
    elseif(NOT CMAKE_FIND_PACKAGE_NAME STREQUAL "lamina" OR NOT lamina_FIND_QUIETLY)
      message(STATUS "lamina: no stb library found (only the header, ${LAMINA_STB_INCLUDE_DIR}): "
        "a program that uses lamina's report defines STB_IMAGE_WRITE_IMPLEMENTATION in one .cpp file")
    endif()
  endif()
endmacro()
