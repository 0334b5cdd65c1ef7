# Checks the public headers under include/lamina, discovered by globbing when
# the test runs (so a header added or moved is checked without reconfiguring).
# Run by ctest (tests/headers/CMakeLists.txt) as
#   cmake -DCONFIG=<headers_config.cmake> -DMODE=graph|compile -P check_headers.cmake
#
# MODE=graph: reads every header, no compiler involved, and fails on
#   - an #include after the header's first line of code (the first line that is
#     neither blank, nor a comment, nor a preprocessor directive): an include at
#     the bottom of a file hides a cycle;
#   - an include of a lamina header that does not exist;
#   - a cycle in the graph of lamina/ includes, printed as its path
#     (a.hpp -> b.hpp -> a.hpp);
#   - a header of a directory in LIGHT_DIRS that reaches nlohmann-json or stb
#     through its includes, printed as the chain that reaches it.
# MODE=compile: compiles each header alone (one translation unit per header,
#   -fsyntax-only, the header included twice to exercise its guard). Headers in
#   LIGHT_DIRS are compiled with only lamina's, Eigen's, xsimd's and zlib's
#   include directories, behind a directory of stand-ins for every nlohmann-json
#   and stb header that stop the compile with #error: Debian installs both in
#   /usr/include, which no compiler flag removes from the search path.
#
# CONFIG sets INCLUDE_DIR (lamina's include/), WORK_DIR, CXX, CXX_FLAGS,
# LIGHT_DIRS, LIGHT_INCLUDES, FULL_INCLUDES, NLOHMANN_DIRS and STB_DIR.
cmake_minimum_required(VERSION 3.18)
include(${CONFIG})
list(REMOVE_DUPLICATES LIGHT_INCLUDES)
list(REMOVE_DUPLICATES FULL_INCLUDES)
list(REMOVE_DUPLICATES NLOHMANN_DIRS)
string(REPLACE ";" "/, " light_dirs_text "${LIGHT_DIRS}/")

file(GLOB_RECURSE headers RELATIVE ${INCLUDE_DIR} ${INCLUDE_DIR}/lamina/*.hpp)
list(SORT headers)
list(LENGTH headers header_count)
if(header_count EQUAL 0)
  message(FATAL_ERROR "no headers found under ${INCLUDE_DIR}/lamina")
endif()

# True when header (lamina/<dir>/x.hpp) sits in one of LIGHT_DIRS.
function(is_light header out)
  set(result FALSE)
  foreach(dir IN LISTS LIGHT_DIRS)
    if(header MATCHES "^lamina/${dir}/")
      set(result TRUE)
    endif()
  endforeach()
  set(${out} ${result} PARENT_SCOPE)
endfunction()

if(MODE STREQUAL "graph")
  set(problems "")
  foreach(header IN LISTS headers)
    file(READ ${INCLUDE_DIR}/${header} content)
    # One list element per line: protect the characters CMake lists treat
    # specially (';' separates, unbalanced brackets stop the splitting).
    string(REPLACE "\\" "/" content "${content}")
    string(REPLACE ";" "," content "${content}")
    string(REPLACE "[" "(" content "${content}")
    string(REPLACE "]" ")" content "${content}")
    string(REPLACE "\n" ";" lines "${content}")
    set(line_number 0)
    set(first_code 0)
    set(in_block_comment FALSE)
    set(continued FALSE)
    set(edges "")
    set(externals "")
    foreach(line IN LISTS lines)
      math(EXPR line_number "${line_number} + 1")
      set(is_code FALSE)
      set(directive FALSE)
      if(in_block_comment)
        if(line MATCHES "\\*/")
          set(in_block_comment FALSE)
        endif()
      elseif(continued)
        set(directive TRUE)  # the continuation of a preprocessor line
      elseif(line MATCHES "^[ \t]*#")
        set(directive TRUE)
        if(line MATCHES "^[ \t]*#[ \t]*include[ \t]*[<\"]([^>\"]+)[>\"]")
          set(target "${CMAKE_MATCH_1}")
          if(first_code GREATER 0)
            string(APPEND problems
              "${header}:${line_number}: #include <${target}> after the first line of code (line ${first_code}); includes go at the top\n")
          endif()
          if(target MATCHES "^lamina/")
            if(NOT EXISTS ${INCLUDE_DIR}/${target})
              string(APPEND problems "${header}:${line_number}: includes ${target}, which does not exist\n")
            else()
              list(APPEND edges ${target})
            endif()
          else()
            list(APPEND externals ${target})
          endif()
        endif()
      elseif(line MATCHES "^[ \t]*$" OR line MATCHES "^[ \t]*//")
        # blank or a line comment
      elseif(line MATCHES "^[ \t]*/\\*")
        if(NOT line MATCHES "\\*/")
          set(in_block_comment TRUE)
        endif()
      else()
        set(is_code TRUE)
      endif()
      if(is_code AND first_code EQUAL 0)
        set(first_code ${line_number})
      endif()
      # A directive ending in a backslash (now '/') goes on on the next line.
      if(directive AND line MATCHES "/$")
        set(continued TRUE)
      else()
        set(continued FALSE)
      endif()
    endforeach()
    set(edges_${header} ${edges})
    set(externals_${header} ${externals})
  endforeach()

  # Cycles: depth-first search, colouring each header white (unseen), grey
  # (on the current path) or black (done). Meeting a grey header closes a cycle.
  function(visit header path)
    set_property(GLOBAL PROPERTY colour_${header} grey)
    foreach(next IN LISTS edges_${header})
      get_property(colour GLOBAL PROPERTY colour_${next})
      if(colour STREQUAL "grey")
        set(cycle "")
        set(on_cycle FALSE)
        foreach(step IN LISTS path header)
          if(step STREQUAL next)
            set(on_cycle TRUE)
          endif()
          if(on_cycle)
            string(APPEND cycle "${step} -> ")
          endif()
        endforeach()
        set_property(GLOBAL APPEND_STRING PROPERTY cycles "include cycle: ${cycle}${next}\n")
      elseif(NOT colour STREQUAL "black")
        visit(${next} "${path};${header}")
      endif()
    endforeach()
    set_property(GLOBAL PROPERTY colour_${header} black)
  endfunction()
  set_property(GLOBAL PROPERTY cycles "")
  foreach(header IN LISTS headers)
    get_property(colour GLOBAL PROPERTY colour_${header})
    if(NOT colour STREQUAL "black")
      visit(${header} "")
    endif()
  endforeach()
  get_property(cycles GLOBAL PROPERTY cycles)
  string(APPEND problems "${cycles}")

  # Light headers: breadth-first over lamina includes, remembering how each
  # header was reached, until an nlohmann-json or stb include shows up.
  foreach(header IN LISTS headers)
    is_light(${header} light)
    if(NOT light)
      continue()
    endif()
    set(queue ${header})
    set(seen ${header})
    set(chain_${header} ${header})
    while(queue)
      list(POP_FRONT queue current)
      foreach(external IN LISTS externals_${current})
        if(external MATCHES "^nlohmann/|^stb")
          string(REPLACE ";" " -> " chain "${chain_${current}}")
          string(APPEND problems
            "${header} needs <${external}> (${chain} -> <${external}>): headers of ${light_dirs_text} must compile without nlohmann-json and stb\n")
        endif()
      endforeach()
      foreach(next IN LISTS edges_${current})
        if(NOT next IN_LIST seen)
          list(APPEND seen ${next})
          list(APPEND queue ${next})
          set(chain_${next} ${chain_${current}} ${next})
        endif()
      endforeach()
    endwhile()
  endforeach()

  if(problems)
    message("${problems}")
    message(FATAL_ERROR "the headers under ${INCLUDE_DIR}/lamina break the include rules (above)")
  endif()
  message(STATUS "${header_count} headers: includes at the top, no include cycle, "
    "the headers of ${light_dirs_text} need neither nlohmann-json nor stb")

elseif(MODE STREQUAL "compile")
  file(REMOVE_RECURSE ${WORK_DIR})
  # Stand-ins for every nlohmann-json and stb header, as <nlohmann/...>,
  # <stb_x.h> and <stb/stb_x.h>.
  set(poison ${WORK_DIR}/without-json-and-stb)
  foreach(dir IN LISTS NLOHMANN_DIRS)
    file(GLOB_RECURSE found RELATIVE ${dir} ${dir}/nlohmann/*)
    foreach(name IN LISTS found)
      file(WRITE ${poison}/${name}
        "#error \"<${name}> is nlohmann-json: the headers of ${light_dirs_text} must compile without it\"\n")
    endforeach()
  endforeach()
  if(STB_DIR)
    file(GLOB found RELATIVE ${STB_DIR} ${STB_DIR}/*.h)
    foreach(name IN LISTS found)
      foreach(as IN ITEMS ${name} stb/${name})
        file(WRITE ${poison}/${as}
          "#error \"<${as}> is stb: the headers of ${light_dirs_text} must compile without it\"\n")
      endforeach()
    endforeach()
  endif()

  set(light_flags -I${poison} -I${INCLUDE_DIR})
  foreach(dir IN LISTS LIGHT_INCLUDES)
    list(APPEND light_flags -I${dir})
  endforeach()
  set(full_flags -I${INCLUDE_DIR})
  foreach(dir IN LISTS FULL_INCLUDES)
    list(APPEND full_flags -I${dir})
  endforeach()

  set(failed "")
  set(light_count 0)
  foreach(header IN LISTS headers)
    string(MAKE_C_IDENTIFIER ${header} name)
    set(source ${WORK_DIR}/${name}.cpp)
    # Twice: the second include must be a no-op (#pragma once or a guard).
    file(WRITE ${source} "#include \"${header}\"\n#include \"${header}\"\nint main() { return 0; }\n")
    is_light(${header} light)
    if(light)
      set(flags ${light_flags})
      math(EXPR light_count "${light_count} + 1")
    else()
      set(flags ${full_flags})
    endif()
    execute_process(COMMAND ${CXX} ${CXX_FLAGS} -fsyntax-only ${flags} ${source}
      RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
    if(NOT rc EQUAL 0)
      # The first errors say what is missing; the rest is usually a cascade.
      string(SUBSTRING "${err}" 0 3000 err)
      if(light)
        set(what "alone, without nlohmann-json and stb")
      else()
        set(what "alone")
      endif()
      message("---- ${header} does not compile ${what}:\n${err}")
      list(APPEND failed ${header})
    endif()
  endforeach()
  if(failed)
    string(REPLACE ";" "\n  " failed "${failed}")
    message(FATAL_ERROR "headers that do not compile on their own (errors above):\n  ${failed}")
  endif()
  message(STATUS "${header_count} headers compile alone, ${light_count} of them (${light_dirs_text}) "
    "without nlohmann-json and stb")
else()
  message(FATAL_ERROR "MODE must be graph or compile, got '${MODE}'")
endif()
