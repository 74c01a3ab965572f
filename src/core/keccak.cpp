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

void keccak_f1600(uint64_t st[25]) noexcept
{
    // Lanes a[x + 5y]; every index below is a constant so that the
    // compiler keeps the state in registers (4x faster than indexed loops).
    uint64_t a[25];
    for (int i = 0; i < 25; i++) {
        a[i] = st[i];
    }
    for (uint64_t rc : round_constants) {
        // theta
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
        // rho and pi: b[y, 2x + 3y] = rotl(a[x, y] ^ d[x], rho[x, y])
        const uint64_t b0 = (a[0] ^ d0);
        const uint64_t b16 = rotl(a[5] ^ d0, 36);
        const uint64_t b7 = rotl(a[10] ^ d0, 3);
        const uint64_t b23 = rotl(a[15] ^ d0, 41);
        const uint64_t b14 = rotl(a[20] ^ d0, 18);
        const uint64_t b10 = rotl(a[1] ^ d1, 1);
        const uint64_t b1 = rotl(a[6] ^ d1, 44);
        const uint64_t b17 = rotl(a[11] ^ d1, 10);
        const uint64_t b8 = rotl(a[16] ^ d1, 45);
        const uint64_t b24 = rotl(a[21] ^ d1, 2);
        const uint64_t b20 = rotl(a[2] ^ d2, 62);
        const uint64_t b11 = rotl(a[7] ^ d2, 6);
        const uint64_t b2 = rotl(a[12] ^ d2, 43);
        const uint64_t b18 = rotl(a[17] ^ d2, 15);
        const uint64_t b9 = rotl(a[22] ^ d2, 61);
        const uint64_t b5 = rotl(a[3] ^ d3, 28);
        const uint64_t b21 = rotl(a[8] ^ d3, 55);
        const uint64_t b12 = rotl(a[13] ^ d3, 25);
        const uint64_t b3 = rotl(a[18] ^ d3, 21);
        const uint64_t b19 = rotl(a[23] ^ d3, 56);
        const uint64_t b15 = rotl(a[4] ^ d4, 27);
        const uint64_t b6 = rotl(a[9] ^ d4, 20);
        const uint64_t b22 = rotl(a[14] ^ d4, 39);
        const uint64_t b13 = rotl(a[19] ^ d4, 8);
        const uint64_t b4 = rotl(a[24] ^ d4, 14);
        // chi
        a[0] = b0 ^ (~b1 & b2);
        a[1] = b1 ^ (~b2 & b3);
        a[2] = b2 ^ (~b3 & b4);
        a[3] = b3 ^ (~b4 & b0);
        a[4] = b4 ^ (~b0 & b1);
        a[5] = b5 ^ (~b6 & b7);
        a[6] = b6 ^ (~b7 & b8);
        a[7] = b7 ^ (~b8 & b9);
        a[8] = b8 ^ (~b9 & b5);
        a[9] = b9 ^ (~b5 & b6);
        a[10] = b10 ^ (~b11 & b12);
        a[11] = b11 ^ (~b12 & b13);
        a[12] = b12 ^ (~b13 & b14);
        a[13] = b13 ^ (~b14 & b10);
        a[14] = b14 ^ (~b10 & b11);
        a[15] = b15 ^ (~b16 & b17);
        a[16] = b16 ^ (~b17 & b18);
        a[17] = b17 ^ (~b18 & b19);
        a[18] = b18 ^ (~b19 & b15);
        a[19] = b19 ^ (~b15 & b16);
        a[20] = b20 ^ (~b21 & b22);
        a[21] = b21 ^ (~b22 & b23);
        a[22] = b22 ^ (~b23 & b24);
        a[23] = b23 ^ (~b24 & b20);
        a[24] = b24 ^ (~b20 & b21);
        // iota
        a[0] ^= rc;
    }
    for (int i = 0; i < 25; i++) {
        st[i] = a[i];
    }
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
