// The architectures mambalite runs, one file each in src/models/: each reads its hyper-parameters
// and lays out its blocks (ModelConfig::blocks) from the file's metadata. Adding an architecture is
// one new file and one line in kArchitectures (config.cpp).
#pragma once

#include "models/config.h"

namespace mambalite {

using ReadArchitecture = void (*)(const GgufFile& f, ModelConfig& c);

void read_mamba(const GgufFile& f, ModelConfig& c);           // mamba.cpp: Mamba-1, FalconMamba
void read_mamba2(const GgufFile& f, ModelConfig& c);          // mamba2.cpp
void read_granite_hybrid(const GgufFile& f, ModelConfig& c);  // granite_hybrid.cpp: also Bamba
void read_nemotron_h(const GgufFile& f, ModelConfig& c);      // nemotron_h.cpp
void read_jamba(const GgufFile& f, ModelConfig& c);           // jamba.cpp
void read_falcon_h1(const GgufFile& f, ModelConfig& c);       // falcon_h1.cpp

}  // namespace mambalite
