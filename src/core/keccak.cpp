#include "keccak.hpp"

namespace x402 {

namespace {

constexpr uint64_t round_constants[24] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL,
    0x8000000080008000ULL, 0x000000000000808bULL, 0x0000000080000001ULL,
    0x8000000080008081ULL, 0x8000000000008009ULL, 0x000000000000008aULL,
    0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000aULL,
    0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL,
    0x8000000000008003ULL, 0x8000000000008002ULL, 0x8000000000000080ULL,
    0x000000000000800aULL, 0x800000008000000aULL, 0x8000000080008081ULL,
    0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

inline uint64_t rotl(uint64_t x, unsigned n)
{
    return (x << n) | (x >> (64 - n));
}

// Lanes are little-endian in the byte stream; this is portable regardless
// of host order.
inline uint64_t load64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

}  // namespace

namespace {

// One round from a to e, row by row: each output row needs only its five
// rho-pi lanes b[y, 2x + 3y] = rotl(a[x, y] ^ d[x], rho[x, y]), then chi
// along the row, so few values are live at once (the whole state in
// locals spilled about a third of its instructions).
[[gnu::always_inline]] inline void round(const uint64_t *a, uint64_t *e,
                                         uint64_t rc) noexcept
{
    const uint64_t c0 = a[0] ^ a[5] ^ a[10] ^ a[15] ^ a[20];
    const uint64_t c1 = a[1] ^ a[6] ^ a[11] ^ a[16] ^ a[21];
    const uint64_t c2 = a[2] ^ a[7] ^ a[12] ^ a[17] ^ a[22];
    const uint64_t c3 = a[3] ^ a[8] ^ a[13] ^ a[18] ^ a[23];
    const uint64_t c4 = a[4] ^ a[9] ^ a[14] ^ a[19] ^ a[24];
    const uint64_t d0 = c4 ^ rotl(c1, 1);
    const uint64_t d1 = c0 ^ rotl(c2, 1);
    const uint64_t d2 = c1 ^ rotl(c3, 1);
    const uint64_t d3 = c2 ^ rotl(c4, 1);
    const uint64_t d4 = c3 ^ rotl(c0, 1);
    uint64_t b0, b1, b2, b3, b4;

    b0 = a[0] ^ d0;
    b1 = rotl(a[6] ^ d1, 44);
    b2 = rotl(a[12] ^ d2, 43);
    b3 = rotl(a[18] ^ d3, 21);
    b4 = rotl(a[24] ^ d4, 14);
    e[0] = b0 ^ (~b1 & b2) ^ rc;
    e[1] = b1 ^ (~b2 & b3);
    e[2] = b2 ^ (~b3 & b4);
    e[3] = b3 ^ (~b4 & b0);
    e[4] = b4 ^ (~b0 & b1);

    b0 = rotl(a[3] ^ d3, 28);
    b1 = rotl(a[9] ^ d4, 20);
    b2 = rotl(a[10] ^ d0, 3);
    b3 = rotl(a[16] ^ d1, 45);
    b4 = rotl(a[22] ^ d2, 61);
    e[5] = b0 ^ (~b1 & b2);
    e[6] = b1 ^ (~b2 & b3);
    e[7] = b2 ^ (~b3 & b4);
    e[8] = b3 ^ (~b4 & b0);
    e[9] = b4 ^ (~b0 & b1);

    b0 = rotl(a[1] ^ d1, 1);
    b1 = rotl(a[7] ^ d2, 6);
    b2 = rotl(a[13] ^ d3, 25);
    b3 = rotl(a[19] ^ d4, 8);
    b4 = rotl(a[20] ^ d0, 18);
    e[10] = b0 ^ (~b1 & b2);
    e[11] = b1 ^ (~b2 & b3);
    e[12] = b2 ^ (~b3 & b4);
    e[13] = b3 ^ (~b4 & b0);
    e[14] = b4 ^ (~b0 & b1);

    b0 = rotl(a[4] ^ d4, 27);
    b1 = rotl(a[5] ^ d0, 36);
    b2 = rotl(a[11] ^ d1, 10);
    b3 = rotl(a[17] ^ d2, 15);
    b4 = rotl(a[23] ^ d3, 56);
    e[15] = b0 ^ (~b1 & b2);
    e[16] = b1 ^ (~b2 & b3);
    e[17] = b2 ^ (~b3 & b4);
    e[18] = b3 ^ (~b4 & b0);
    e[19] = b4 ^ (~b0 & b1);

    b0 = rotl(a[2] ^ d2, 62);
    b1 = rotl(a[8] ^ d3, 55);
    b2 = rotl(a[14] ^ d4, 39);
    b3 = rotl(a[15] ^ d0, 41);
    b4 = rotl(a[21] ^ d1, 2);
    e[20] = b0 ^ (~b1 & b2);
    e[21] = b1 ^ (~b2 & b3);
    e[22] = b2 ^ (~b3 & b4);
    e[23] = b3 ^ (~b4 & b0);
    e[24] = b4 ^ (~b0 & b1);
}

[[gnu::always_inline]] inline void permute(uint64_t st[25]) noexcept
{
    // Ping-pong between the state and a scratch copy, two rounds a step.
    uint64_t tmp[25];
    for (int i = 0; i < 24; i += 2) {
        round(st, tmp, round_constants[i]);
        round(tmp, st, round_constants[i + 1]);
    }
}

void permute_generic(uint64_t st[25]) noexcept
{
    permute(st);
}

#if defined(__x86_64__) && defined(__GNUC__)
// chi's ~b & c is one BMI1 andn instead of mov, not, and: a quarter less
// time per permutation. Chosen at run time; every x86-64 since 2013 has it.
[[gnu::target("bmi")]] void permute_bmi(uint64_t st[25]) noexcept
{
    permute(st);
}

using Permutation = void (*)(uint64_t *) noexcept;

Permutation best_permutation() noexcept
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("bmi") ? permute_bmi : permute_generic;
}
#endif

}  // namespace

void keccak_f1600(uint64_t st[25]) noexcept
{
#if defined(__x86_64__) && defined(__GNUC__)
    static const Permutation p = best_permutation();
    p(st);
#else
    permute_generic(st);
#endif
}

void Keccak256::update(const void *data, size_t len) noexcept
{
    auto p = static_cast<const uint8_t *>(data);
    // Bytes up to a lane boundary, then whole lanes, then the tail bytes.
    while (len > 0 && pos_ % 8 != 0) {
        st_[pos_ / 8] ^= uint64_t(*p++) << (8 * (pos_ % 8));
        len--;
        if (++pos_ == rate) {
            keccak_f1600(st_);
            pos_ = 0;
        }
    }
    while (len >= 8) {
        st_[pos_ / 8] ^= load64(p);
        p += 8;
        len -= 8;
        pos_ += 8;
        if (pos_ == rate) {
            keccak_f1600(st_);
            pos_ = 0;
        }
    }
    while (len > 0) {
        st_[pos_ / 8] ^= uint64_t(*p++) << (8 * (pos_ % 8));
        len--;
        pos_++;  // cannot reach rate: fewer than 8 bytes after a lane
    }
}

Hash32 Keccak256::finish() noexcept
{
    st_[pos_ / 8] ^= uint64_t(pad_) << (8 * (pos_ % 8));
    st_[(rate - 1) / 8] ^= uint64_t(0x80) << (8 * ((rate - 1) % 8));
    keccak_f1600(st_);
    Hash32 out;
    for (size_t i = 0; i < out.size(); i++) {
        out[i] = uint8_t(st_[i / 8] >> (8 * (i % 8)));
    }
    return out;
}

Hash32 sponge256(const void *data, size_t len, uint8_t pad) noexcept
{
    Keccak256 k(pad);
    k.update(data, len);
    return k.finish();
}

}  // namespace x402
