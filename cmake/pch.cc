// Translation unit that carries the shared precompiled header (see worker/engine/CMakeLists.txt).
