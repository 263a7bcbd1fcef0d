/* Host emulation of the LLVM VE (VEL) intrinsics that sol's generated Vector Engine code uses.
 *
 * The generated kernels are compiled for the host with `-include velintrin_emu.h` instead of
 * `#include <velintrin.h>`, so the emulation runs the very source that clang's VE target compiles.
 * What it models, because a kernel that relies on anything else is wrong on a real VE:
 *
 *  - A vector register (`__vr`) is 256 lanes of 64 bits. Single-precision ("s" / "u") operations
 *    read and write the UPPER 32 bits of a lane; the lower 32 bits of their results are not
 *    specified and are filled with a marker here.
 *  - Every intrinsic takes the vector length `vl` as its last operand and touches lanes 0..vl-1
 *    only. Lanes >= vl of a result are undefined for the plain forms (`..._vvvl`): they are
 *    filled with a signalling-NaN marker, so a kernel that reads them computes NaN. The
 *    pass-through forms (`..._vvvvl`, extra operand `pt`) copy lanes >= vl from `pt`. Stores
 *    write vl elements and nothing else.
 *  - Operand order is the intrinsic's: `_vel_vfmads_vvvvl(vy, vz, vw, vl)` is vy + vz * vw with
 *    one rounding, `_vel_vfsubs_vvvl(vy, vz, vl)` is vy - vz, a scalar operand stands where its
 *    letter stands (`_vel_vfmads_vvsvl(vy, sz, vw, vl)` is vy + sz * vw), loads and stores take
 *    the stride in BYTES before the address (`_vel_vldu_vssl(stride, addr, vl)`).
 *  - Reductions (`_vel_vfsums_vvl`) leave their result in lane 0; other lanes are undefined.
 *  - Floating max/min return NaN when either operand is NaN (as the VE's VFMAX/VFMIN do).
 *
 * A vl outside 0..256 is a fault: it is recorded (sol_vel_fault) and reported by the network's
 * sol_forward instead of crashing the host process; the operation is clamped to 256 lanes.
 */
#ifndef SOL_VELINTRIN_EMU_H
#define SOL_VELINTRIN_EMU_H

#define SOL_VEL_EMULATED 1

#include <math.h>
#include <stdint.h>
#include <string.h>

#define SOL_VEL_LANES 256
#define SOL_VEL_UNDEF_UPPER 0x7fa0deadu /* a signalling NaN: undefined single-precision lanes */
#define SOL_VEL_UNDEF_LOWER 0x5a5a5a5au /* the unspecified lower half of single-precision lanes */
#define SOL_VEL_UNDEF (((uint64_t)SOL_VEL_UNDEF_UPPER << 32) | SOL_VEL_UNDEF_LOWER)

typedef struct {
  uint64_t e[SOL_VEL_LANES];
} __vr;

static const char* sol_vel_fault = 0; /* first intrinsic that got an invalid vl, if any */
static long sol_vel_fault_vl = 0;

static inline int sol_vel_vl(int vl, const char* where) {
  if (vl < 0 || vl > SOL_VEL_LANES) {
    if (!sol_vel_fault) {
      sol_vel_fault = where;
      sol_vel_fault_vl = vl;
    }
    return vl < 0 ? 0 : SOL_VEL_LANES;
  }
  return vl;
}

static inline float sol_vel_upper(uint64_t lane) {
  uint32_t bits = (uint32_t)(lane >> 32);
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static inline uint64_t sol_vel_single(float f) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  return ((uint64_t)bits << 32) | SOL_VEL_UNDEF_LOWER;
}

/* Lanes vl..255 of a plain-form result: undefined. */
static inline void sol_vel_undefined_tail(__vr* r, int vl) {
  for (int i = vl; i < SOL_VEL_LANES; ++i) r->e[i] = SOL_VEL_UNDEF;
}

static inline float sol_vel_max(float a, float b) {
  if (a != a || b != b) return __builtin_nanf("");
  return a > b ? a : b;
}

static inline float sol_vel_min(float a, float b) {
  if (a != a || b != b) return __builtin_nanf("");
  return a < b ? a : b;
}

/* --- loads, stores, broadcasts, lane access ------------------------------------------------ */

/* VLDU: lane i gets the 4 bytes at addr + i * stride in its upper half. */
static inline __vr _vel_vldu_vssl(long stride, const void* addr, int vl) {
  __vr r;
  vl = sol_vel_vl(vl, "_vel_vldu_vssl");
  const char* p = (const char*)addr;
  for (int i = 0; i < vl; ++i) {
    uint32_t bits;
    memcpy(&bits, p + (long)i * stride, sizeof bits);
    r.e[i] = ((uint64_t)bits << 32) | SOL_VEL_UNDEF_LOWER;
  }
  sol_vel_undefined_tail(&r, vl);
  return r;
}

/* VSTU: the upper halves of lanes 0..vl-1 go to addr + i * stride; nothing else is written. */
static inline void _vel_vstu_vssl(__vr vx, long stride, void* addr, int vl) {
  vl = sol_vel_vl(vl, "_vel_vstu_vssl");
  char* p = (char*)addr;
  for (int i = 0; i < vl; ++i) {
    uint32_t bits = (uint32_t)(vx.e[i] >> 32);
    memcpy(p + (long)i * stride, &bits, sizeof bits);
  }
}

/* VBRD of a single-precision scalar: lanes 0..vl-1 hold sy. */
static inline __vr _vel_vbrds_vsl(float sy, int vl) {
  __vr r;
  vl = sol_vel_vl(vl, "_vel_vbrds_vsl");
  const uint64_t lane = sol_vel_single(sy);
  for (int i = 0; i < vl; ++i) r.e[i] = lane;
  sol_vel_undefined_tail(&r, vl);
  return r;
}

/* LVS: the single-precision value in lane `index` (upper half). */
static inline float _vel_lvss_svs(__vr vx, int index) {
  if (index < 0 || index >= SOL_VEL_LANES) {
    if (!sol_vel_fault) {
      sol_vel_fault = "_vel_lvss_svs (lane index)";
      sol_vel_fault_vl = index;
    }
    return __builtin_nanf("");
  }
  return sol_vel_upper(vx.e[index]);
}

/* --- arithmetic ----------------------------------------------------------------------------- */

#define SOL_VEL_VV(name, expr)                                 \
  static inline __vr name(__vr vy, __vr vz, int vl) {         \
    __vr r;                                                    \
    vl = sol_vel_vl(vl, #name);                                \
    for (int i = 0; i < vl; ++i) {                             \
      const float y = sol_vel_upper(vy.e[i]);                  \
      const float z = sol_vel_upper(vz.e[i]);                  \
      r.e[i] = sol_vel_single(expr);                           \
    }                                                          \
    sol_vel_undefined_tail(&r, vl);                            \
    return r;                                                  \
  }

#define SOL_VEL_VV_PT(name, expr)                                   \
  static inline __vr name(__vr vy, __vr vz, __vr pt, int vl) {     \
    __vr r = pt;                                                    \
    vl = sol_vel_vl(vl, #name);                                     \
    for (int i = 0; i < vl; ++i) {                                  \
      const float y = sol_vel_upper(vy.e[i]);                       \
      const float z = sol_vel_upper(vz.e[i]);                       \
      r.e[i] = sol_vel_single(expr);                                \
    }                                                               \
    return r;                                                       \
  }

#define SOL_VEL_SV(name, expr)                                 \
  static inline __vr name(float y, __vr vz, int vl) {         \
    __vr r;                                                    \
    vl = sol_vel_vl(vl, #name);                                \
    for (int i = 0; i < vl; ++i) {                             \
      const float z = sol_vel_upper(vz.e[i]);                  \
      r.e[i] = sol_vel_single(expr);                           \
    }                                                          \
    sol_vel_undefined_tail(&r, vl);                            \
    return r;                                                  \
  }

SOL_VEL_VV(_vel_vfadds_vvvl, y + z)
SOL_VEL_VV_PT(_vel_vfadds_vvvvl, y + z)
SOL_VEL_SV(_vel_vfadds_vsvl, y + z)
SOL_VEL_VV(_vel_vfsubs_vvvl, y - z)
SOL_VEL_SV(_vel_vfsubs_vsvl, y - z)
SOL_VEL_VV(_vel_vfmuls_vvvl, y * z)
SOL_VEL_SV(_vel_vfmuls_vsvl, y * z)
SOL_VEL_VV(_vel_vfdivs_vvvl, y / z)
SOL_VEL_SV(_vel_vfdivs_vsvl, y / z)
SOL_VEL_VV(_vel_vfmaxs_vvvl, sol_vel_max(y, z))
SOL_VEL_VV_PT(_vel_vfmaxs_vvvvl, sol_vel_max(y, z))
SOL_VEL_SV(_vel_vfmaxs_vsvl, sol_vel_max(y, z))
SOL_VEL_VV(_vel_vfmins_vvvl, sol_vel_min(y, z))
SOL_VEL_SV(_vel_vfmins_vsvl, sol_vel_min(y, z))

/* VFMAD: vy + vz * vw, rounded once. */
static inline __vr _vel_vfmads_vvvvl(__vr vy, __vr vz, __vr vw, int vl) {
  __vr r;
  vl = sol_vel_vl(vl, "_vel_vfmads_vvvvl");
  for (int i = 0; i < vl; ++i)
    r.e[i] = sol_vel_single(fmaf(sol_vel_upper(vz.e[i]), sol_vel_upper(vw.e[i]), sol_vel_upper(vy.e[i])));
  sol_vel_undefined_tail(&r, vl);
  return r;
}

/* VFMAD with the scalar in the multiplicand's place: vy + sz * vw. */
static inline __vr _vel_vfmads_vvsvl(__vr vy, float sz, __vr vw, int vl) {
  __vr r;
  vl = sol_vel_vl(vl, "_vel_vfmads_vvsvl");
  for (int i = 0; i < vl; ++i) r.e[i] = sol_vel_single(fmaf(sz, sol_vel_upper(vw.e[i]), sol_vel_upper(vy.e[i])));
  sol_vel_undefined_tail(&r, vl);
  return r;
}

static inline __vr _vel_vfsqrts_vvl(__vr vy, int vl) {
  __vr r;
  vl = sol_vel_vl(vl, "_vel_vfsqrts_vvl");
  for (int i = 0; i < vl; ++i) r.e[i] = sol_vel_single(sqrtf(sol_vel_upper(vy.e[i])));
  sol_vel_undefined_tail(&r, vl);
  return r;
}

/* VAND with a 64-bit scalar: a bitwise operation on whole lanes (both halves are defined). */
static inline __vr _vel_vand_vsvl(unsigned long sy, __vr vz, int vl) {
  __vr r;
  vl = sol_vel_vl(vl, "_vel_vand_vsvl");
  for (int i = 0; i < vl; ++i) r.e[i] = (uint64_t)sy & vz.e[i];
  sol_vel_undefined_tail(&r, vl);
  return r;
}

/* VFSUM: lane 0 gets the sum of lanes 0..vl-1 (the ISA does not fix the order; lane order
 * here). Every other lane is undefined. */
static inline __vr _vel_vfsums_vvl(__vr vy, int vl) {
  __vr r;
  vl = sol_vel_vl(vl, "_vel_vfsums_vvl");
  float acc = 0.0f;
  for (int i = 0; i < vl; ++i) acc += sol_vel_upper(vy.e[i]);
  r.e[0] = sol_vel_single(acc);
  sol_vel_undefined_tail(&r, 1);
  return r;
}

/* --- 64-bit lanes and gathers (resize2d: tables of byte offsets, addresses, vgtu) ----------- */

/* VLD: lane i gets the 8 bytes at addr + i * stride (a whole 64-bit lane). */
static inline __vr _vel_vld_vssl(long stride, const void* addr, int vl) {
  __vr r;
  vl = sol_vel_vl(vl, "_vel_vld_vssl");
  const char* p = (const char*)addr;
  for (int i = 0; i < vl; ++i) memcpy(&r.e[i], p + (long)i * stride, sizeof r.e[i]);
  sol_vel_undefined_tail(&r, vl);
  return r;
}

/* VADDU.L with a scalar: 64-bit unsigned sy + vz per lane (wrapping), e.g. base + byte offsets. */
static inline __vr _vel_vaddul_vsvl(unsigned long sy, __vr vz, int vl) {
  __vr r;
  vl = sol_vel_vl(vl, "_vel_vaddul_vsvl");
  for (int i = 0; i < vl; ++i) r.e[i] = (uint64_t)sy + vz.e[i];
  sol_vel_undefined_tail(&r, vl);
  return r;
}

/* VGTU: lane i gets the 4 bytes at the address in lane i of vy in its upper half, as VLDU does
 * for a strided address. sy and sz are always 0 in sol's code (as in LLVM's own gathers); this
 * emulation accepts nothing else. */
static inline __vr _vel_vgtu_vvssl(__vr vy, unsigned long sy, unsigned long sz, int vl) {
  __vr r;
  vl = sol_vel_vl(vl, "_vel_vgtu_vvssl");
  if ((sy || sz) && !sol_vel_fault) sol_vel_fault = "_vel_vgtu_vvssl (sy/sz other than 0)";
  for (int i = 0; i < vl; ++i) {
    uint32_t bits;
    memcpy(&bits, (const void*)(uintptr_t)vy.e[i], sizeof bits);
    r.e[i] = ((uint64_t)bits << 32) | SOL_VEL_UNDEF_LOWER;
  }
  sol_vel_undefined_tail(&r, vl);
  return r;
}

#undef SOL_VEL_VV
#undef SOL_VEL_VV_PT
#undef SOL_VEL_SV

#endif /* SOL_VELINTRIN_EMU_H */
