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

// rho offsets and pi destinations along the (1,0) lane cycle.
constexpr unsigned rho[24] = {1,  3,  6,  10, 15, 21, 28, 36, 45, 55, 2,  14,
                              27, 41, 56, 8,  25, 43, 62, 18, 39, 61, 20, 44};
constexpr unsigned pi[24] = {10, 7,  11, 17, 18, 3, 5,  16, 8,  21, 24, 4,
                             15, 23, 19, 13, 12, 2, 20, 14, 22, 9,  6,  1};

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

void keccak_f1600(uint64_t st[25]) noexcept
{
    for (uint64_t rc : round_constants) {
        uint64_t bc[5];
        // theta
        for (int i = 0; i < 5; i++) {
            bc[i] = st[i] ^ st[i + 5] ^ st[i + 10] ^ st[i + 15] ^ st[i + 20];
        }
        for (int i = 0; i < 5; i++) {
            uint64_t t = bc[(i + 4) % 5] ^ rotl(bc[(i + 1) % 5], 1);
            for (int j = 0; j < 25; j += 5) {
                st[j + i] ^= t;
            }
        }
        // rho and pi
        uint64_t t = st[1];
        for (int i = 0; i < 24; i++) {
            unsigned j = pi[i];
            uint64_t tmp = st[j];
            st[j] = rotl(t, rho[i]);
            t = tmp;
        }
        // chi
        for (int j = 0; j < 25; j += 5) {
            for (int i = 0; i < 5; i++) {
                bc[i] = st[j + i];
            }
            for (int i = 0; i < 5; i++) {
                st[j + i] ^= (~bc[(i + 1) % 5]) & bc[(i + 2) % 5];
            }
        }
        // iota
        st[0] ^= rc;
    }
}

void Keccak256::update(const void *data, size_t len) noexcept
{
    auto p = static_cast<const uint8_t *>(data);
    while (len > 0) {
        if (pos_ == 0 && len >= rate) {
            for (size_t i = 0; i < rate / 8; i++) {
                st_[i] ^= load64(p + 8 * i);
            }
            keccak_f1600(st_);
            p += rate;
            len -= rate;
            continue;
        }
        st_[pos_ / 8] ^= uint64_t(*p) << (8 * (pos_ % 8));
        p++;
        len--;
        if (++pos_ == rate) {
            keccak_f1600(st_);
            pos_ = 0;
        }
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
