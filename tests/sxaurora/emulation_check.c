/* Checks one emulated VEL intrinsic (named on the command line) against a scalar reference loop.
 *
 * Built with the host compiler and `-include velintrin_emu.h -ffp-contract=off`. For random
 * inputs (with zeros, infinities and NaNs mixed in) and vector lengths 1, 2, 17, 128, 255 and
 * 256 it checks that lanes below vl equal the reference bit for bit (any NaN matches any NaN),
 * that lanes from vl on are the "undefined" marker (plain forms) or pt's lanes (pass-through
 * forms), and that stores write exactly vl elements. Prints "ok NAME" and exits 0, or lists the
 * first mismatches and exits 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int VLS[] = {1, 2, 17, 128, 255, 256};
#define NVLS ((int)(sizeof VLS / sizeof VLS[0]))

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t next_u64(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static float random_float(void) {
  const uint64_t r = next_u64();
  switch (r % 40) {
    case 0: return 0.0f;
    case 1: return -0.0f;
    case 2: return __builtin_inff();
    case 3: return -__builtin_inff();
    case 4: return __builtin_nanf("");
    default: return (float)((double)(r >> 11) / (double)(1ULL << 53) * 16.0 - 8.0);
  }
}

static __vr random_vr(void) {
  __vr v;
  for (int i = 0; i < SOL_VEL_LANES; ++i) v.e[i] = sol_vel_single(random_float()) ^ (next_u64() & 0xffffffffULL);
  return v;
}

static float up(uint64_t lane) { return sol_vel_upper(lane); }

static int failures = 0;

static void same(const char* what, int vl, int lane, float got, float want) {
  uint32_t g, w;
  memcpy(&g, &got, 4);
  memcpy(&w, &want, 4);
  if (g == w || (got != got && want != want)) return;
  if (failures++ < 10) printf("%s vl=%d lane %d: got %a, want %a\n", what, vl, lane, got, want);
}

static void undefined_from(const char* what, int vl, const __vr* r, int from) {
  for (int i = from; i < SOL_VEL_LANES; ++i)
    if (r->e[i] != SOL_VEL_UNDEF && failures++ < 10) printf("%s vl=%d lane %d: not marked undefined\n", what, vl, i);
}

static void passed_through(const char* what, int vl, const __vr* r, const __vr* pt) {
  for (int i = vl; i < SOL_VEL_LANES; ++i)
    if (r->e[i] != pt->e[i] && failures++ < 10) printf("%s vl=%d lane %d: pass-through lane changed\n", what, vl, i);
}

static float ref_max(float a, float b) { return (a != a || b != b) ? __builtin_nanf("") : (a > b ? a : b); }
static float ref_min(float a, float b) { return (a != a || b != b) ? __builtin_nanf("") : (a < b ? a : b); }

/* vy op vz, lane by lane. */
#define CHECK_VV(fn, expr)                                               \
  if (!strcmp(name, #fn)) {                                              \
    for (int k = 0; k < NVLS; ++k) {                                     \
      const int vl = VLS[k];                                             \
      const __vr vy = random_vr(), vz = random_vr();                     \
      const __vr r = fn(vy, vz, vl);                                     \
      for (int i = 0; i < vl; ++i) {                                     \
        const float y = up(vy.e[i]), z = up(vz.e[i]);                    \
        same(#fn, vl, i, up(r.e[i]), (expr));                            \
      }                                                                  \
      undefined_from(#fn, vl, &r, vl);                                   \
    }                                                                    \
    return report(name);                                                 \
  }

#define CHECK_VV_PT(fn, expr)                                            \
  if (!strcmp(name, #fn)) {                                              \
    for (int k = 0; k < NVLS; ++k) {                                     \
      const int vl = VLS[k];                                             \
      const __vr vy = random_vr(), vz = random_vr(), pt = random_vr();   \
      const __vr r = fn(vy, vz, pt, vl);                                 \
      for (int i = 0; i < vl; ++i) {                                     \
        const float y = up(vy.e[i]), z = up(vz.e[i]);                    \
        same(#fn, vl, i, up(r.e[i]), (expr));                            \
      }                                                                  \
      passed_through(#fn, vl, &r, &pt);                                  \
    }                                                                    \
    return report(name);                                                 \
  }

/* scalar sy op vz. */
#define CHECK_SV(fn, expr)                                               \
  if (!strcmp(name, #fn)) {                                              \
    for (int k = 0; k < NVLS; ++k) {                                     \
      const int vl = VLS[k];                                             \
      const float y = random_float();                                    \
      const __vr vz = random_vr();                                       \
      const __vr r = fn(y, vz, vl);                                      \
      for (int i = 0; i < vl; ++i) {                                     \
        const float z = up(vz.e[i]);                                     \
        same(#fn, vl, i, up(r.e[i]), (expr));                            \
      }                                                                  \
      undefined_from(#fn, vl, &r, vl);                                   \
    }                                                                    \
    return report(name);                                                 \
  }

static int report(const char* name) {
  if (failures) {
    printf("%d mismatches in %s\n", failures, name);
    return 1;
  }
  if (sol_vel_fault) {
    printf("unexpected fault in %s\n", sol_vel_fault);
    return 1;
  }
  printf("ok %s\n", name);
  return 0;
}

static int check(const char* name) {
  CHECK_VV(_vel_vfadds_vvvl, y + z)
  CHECK_VV(_vel_vfsubs_vvvl, y - z)
  CHECK_VV(_vel_vfmuls_vvvl, y * z)
  CHECK_VV(_vel_vfdivs_vvvl, y / z)
  CHECK_VV(_vel_vfmaxs_vvvl, ref_max(y, z))
  CHECK_VV(_vel_vfmins_vvvl, ref_min(y, z))
  CHECK_VV_PT(_vel_vfadds_vvvvl, y + z)
  CHECK_VV_PT(_vel_vfmaxs_vvvvl, ref_max(y, z))
  CHECK_SV(_vel_vfadds_vsvl, y + z)
  CHECK_SV(_vel_vfsubs_vsvl, y - z)
  CHECK_SV(_vel_vfmuls_vsvl, y * z)
  CHECK_SV(_vel_vfdivs_vsvl, y / z)
  CHECK_SV(_vel_vfmaxs_vsvl, ref_max(y, z))
  CHECK_SV(_vel_vfmins_vsvl, ref_min(y, z))

  if (!strcmp(name, "_vel_vfmads_vvvvl")) { /* vy + vz * vw, one rounding */
    for (int k = 0; k < NVLS; ++k) {
      const int vl = VLS[k];
      const __vr vy = random_vr(), vz = random_vr(), vw = random_vr();
      const __vr r = _vel_vfmads_vvvvl(vy, vz, vw, vl);
      for (int i = 0; i < vl; ++i) same(name, vl, i, up(r.e[i]), fmaf(up(vz.e[i]), up(vw.e[i]), up(vy.e[i])));
      undefined_from(name, vl, &r, vl);
    }
    return report(name);
  }
  if (!strcmp(name, "_vel_vfmads_vvsvl")) { /* vy + sz * vw */
    for (int k = 0; k < NVLS; ++k) {
      const int vl = VLS[k];
      const __vr vy = random_vr(), vw = random_vr();
      const float sz = random_float();
      const __vr r = _vel_vfmads_vvsvl(vy, sz, vw, vl);
      for (int i = 0; i < vl; ++i) same(name, vl, i, up(r.e[i]), fmaf(sz, up(vw.e[i]), up(vy.e[i])));
      undefined_from(name, vl, &r, vl);
    }
    return report(name);
  }
  if (!strcmp(name, "_vel_vfsqrts_vvl")) {
    for (int k = 0; k < NVLS; ++k) {
      const int vl = VLS[k];
      const __vr vy = random_vr();
      const __vr r = _vel_vfsqrts_vvl(vy, vl);
      for (int i = 0; i < vl; ++i) same(name, vl, i, up(r.e[i]), sqrtf(up(vy.e[i])));
      undefined_from(name, vl, &r, vl);
    }
    return report(name);
  }
  if (!strcmp(name, "_vel_vand_vsvl")) { /* bitwise on all 64 bits */
    for (int k = 0; k < NVLS; ++k) {
      const int vl = VLS[k];
      const unsigned long sy = next_u64();
      const __vr vz = random_vr();
      const __vr r = _vel_vand_vsvl(sy, vz, vl);
      for (int i = 0; i < vl; ++i)
        if (r.e[i] != (sy & vz.e[i]) && failures++ < 10) printf("%s vl=%d lane %d differs\n", name, vl, i);
      undefined_from(name, vl, &r, vl);
    }
    return report(name);
  }
  if (!strcmp(name, "_vel_vfsums_vvl")) { /* lane 0: sum of lanes 0..vl-1 */
    for (int k = 0; k < NVLS; ++k) {
      const int vl = VLS[k];
      __vr vy = random_vr();
      for (int i = 0; i < SOL_VEL_LANES; ++i) /* finite data: a sum, not a NaN contest */
        if (up(vy.e[i]) != up(vy.e[i]) || __builtin_isinf(up(vy.e[i]))) vy.e[i] = sol_vel_single(1.5f);
      const __vr r = _vel_vfsums_vvl(vy, vl);
      float want = 0.0f;
      for (int i = 0; i < vl; ++i) want += up(vy.e[i]);
      same(name, vl, 0, up(r.e[0]), want);
      undefined_from(name, vl, &r, 1);
    }
    return report(name);
  }
  if (!strcmp(name, "_vel_vbrds_vsl")) {
    for (int k = 0; k < NVLS; ++k) {
      const int vl = VLS[k];
      const float s = random_float();
      const __vr r = _vel_vbrds_vsl(s, vl);
      for (int i = 0; i < vl; ++i) same(name, vl, i, up(r.e[i]), s);
      undefined_from(name, vl, &r, vl);
    }
    return report(name);
  }
  if (!strcmp(name, "_vel_lvss_svs")) {
    const __vr v = random_vr();
    const int lanes[] = {0, 1, 100, 255};
    for (int k = 0; k < 4; ++k) same(name, 256, lanes[k], _vel_lvss_svs(v, lanes[k]), up(v.e[lanes[k]]));
    return report(name);
  }
  if (!strcmp(name, "_vel_vldu_vssl")) { /* lane i <- 4 bytes at addr + i * stride (bytes) */
    static float src[4 * 256 * 3 + 8];
    for (int i = 0; i < (int)(sizeof src / sizeof src[0]); ++i) src[i] = random_float();
    const long strides[] = {4, 8, 12, 0, -4};
    for (int s = 0; s < 5; ++s)
      for (int k = 0; k < NVLS; ++k) {
        const int vl = VLS[k];
        const float* base = src + 256 * 3 + 4;  /* room below for the negative stride */
        const __vr r = _vel_vldu_vssl(strides[s], base, vl);
        for (int i = 0; i < vl; ++i) same(name, vl, i, up(r.e[i]), base[i * strides[s] / 4]);
        undefined_from(name, vl, &r, vl);
      }
    return report(name);
  }
  if (!strcmp(name, "_vel_vstu_vssl")) { /* exactly vl elements, at addr + i * stride */
    static float dst[4 * 256 * 3 + 8];
    const long strides[] = {4, 8, -4};
    const float sentinel = 1234.5f;
    for (int s = 0; s < 3; ++s)
      for (int k = 0; k < NVLS; ++k) {
        const int vl = VLS[k];
        for (int i = 0; i < (int)(sizeof dst / sizeof dst[0]); ++i) dst[i] = sentinel;
        const __vr v = random_vr();
        float* base = dst + 256 * 3 + 4;
        _vel_vstu_vssl(v, strides[s], base, vl);
        int written = 0;
        for (int i = 0; i < (int)(sizeof dst / sizeof dst[0]); ++i) written += dst[i] != sentinel || dst[i] != dst[i];
        for (int i = 0; i < vl; ++i) same(name, vl, i, base[i * strides[s] / 4], up(v.e[i]));
        if (written > vl && failures++ < 10) printf("%s vl=%d stride %ld: %d elements written\n", name, vl, strides[s], written);
      }
    return report(name);
  }
  if (!strcmp(name, "_vel_vld_vssl")) { /* lane i <- the 8 bytes at addr + i * stride (bytes) */
    static uint64_t src[256 * 3 + 8];
    for (int i = 0; i < (int)(sizeof src / sizeof src[0]); ++i) src[i] = next_u64();
    const long strides[] = {8, 16, 0, -8};
    for (int s = 0; s < 4; ++s)
      for (int k = 0; k < NVLS; ++k) {
        const int vl = VLS[k];
        const uint64_t* base = src + 256 * 2 + 4;  /* room below for the negative stride */
        const __vr r = _vel_vld_vssl(strides[s], base, vl);
        for (int i = 0; i < vl; ++i)
          if (r.e[i] != base[i * strides[s] / 8] && failures++ < 10) printf("%s vl=%d lane %d differs\n", name, vl, i);
        undefined_from(name, vl, &r, vl);
      }
    return report(name);
  }
  if (!strcmp(name, "_vel_vaddul_vsvl")) { /* 64-bit unsigned sy + vz, wrapping */
    for (int k = 0; k < NVLS; ++k) {
      const int vl = VLS[k];
      const unsigned long sy = next_u64();
      const __vr vz = random_vr();
      const __vr r = _vel_vaddul_vsvl(sy, vz, vl);
      for (int i = 0; i < vl; ++i)
        if (r.e[i] != (uint64_t)(sy + vz.e[i]) && failures++ < 10) printf("%s vl=%d lane %d differs\n", name, vl, i);
      undefined_from(name, vl, &r, vl);
    }
    return report(name);
  }
  if (!strcmp(name, "_vel_vgtu_vvssl")) { /* lane i <- the float at the address in lane i */
    static float src[1024];
    for (int i = 0; i < 1024; ++i) src[i] = random_float();
    for (int k = 0; k < NVLS; ++k) {
      const int vl = VLS[k];
      __vr addr;
      int idx[SOL_VEL_LANES];
      for (int i = 0; i < SOL_VEL_LANES; ++i) {
        idx[i] = (int)(next_u64() % 1024);
        addr.e[i] = (uint64_t)(uintptr_t)(src + idx[i]);
      }
      const __vr r = _vel_vgtu_vvssl(addr, 0, 0, vl);
      for (int i = 0; i < vl; ++i) same(name, vl, i, up(r.e[i]), src[idx[i]]);
      undefined_from(name, vl, &r, vl);
    }
    return report(name);
  }
  if (!strcmp(name, "fault")) { /* an invalid vl is recorded, not a crash */
    const __vr a = random_vr();
    const __vr r = _vel_vfadds_vvvl(a, a, 257);
    (void)r;
    if (!sol_vel_fault || strcmp(sol_vel_fault, "_vel_vfadds_vvvl") || sol_vel_fault_vl != 257) {
      printf("vl=257 was not recorded as a fault\n");
      return 1;
    }
    printf("ok fault\n");
    return 0;
  }
  printf("no check for %s\n", name);
  return 2;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s INTRINSIC\n", argv[0]);
    return 2;
  }
  return check(argv[1]);
}
