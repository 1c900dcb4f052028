#ifndef STELE_CSODIUM_SHIM_H
#define STELE_CSODIUM_SHIM_H
#include <sodium.h>
#endif
