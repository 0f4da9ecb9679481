# Rewrites a kernels/cuda/*.cu file for the CPU emulator (emu_cuda.h):
#   kernel<<<CFG>>>(ARGS)  ->  emu::Launch(CFG) | [](auto... a) { kernel(a...); } | std::make_tuple(ARGS)
# Usage: cmake -DIN=file.cu -DOUT=file.cpp -P rewrite.cmake
file(READ "${IN}" src)
string(REGEX REPLACE
  "([A-Za-z_][A-Za-z_0-9]*(<[^<>;]*>)?)<<<([^;]*)>>>\\("
  "emu::Launch(\\3) | [](auto... emu_a) { \\1(emu_a...); } | std::make_tuple("
  out "${src}")
string(FIND "${out}" "<<<" left)
if(NOT left EQUAL -1)
  message(FATAL_ERROR "${IN}: a kernel launch the emulator rewrite does not understand")
endif()
file(WRITE "${OUT}" "// Generated from ${IN} by tests/gpu/emu/rewrite.cmake: do not edit.\n#line 1 \"${IN}\"\n${out}")
