// extern "C" shims for the payment half of the core: every entry point is
// noexcept and turns any exception into an error return, so nothing C++
// ever unwinds into nginx.
#include <cstring>
#include <new>

#include "base64.hpp"
#include "keccak.hpp"
#include "x402/x402.h"

extern "C" {

int x402_base64_encode(x402_str_t in, const x402_allocator_t *a,
                       x402_str_t *out)
{
    try {
        std::string_view src(in.data ? in.data : "", in.len);
        size_t n = x402::base64_encoded_len(src.size());
        // An empty input still yields a valid (empty) string.
        char *buf = static_cast<char *>(a->alloc(a->ctx, n ? n : 1));
        if (buf == nullptr) {
            return -1;
        }
        x402::base64_encode_to(src, buf);
        out->data = buf;
        out->len = n;
        return 0;
    } catch (...) {
        return -1;
    }
}

void x402_keccak256(const void *in, size_t len, unsigned char out[32])
{
    x402::Hash32 h = x402::keccak256(in ? in : "", in ? len : 0);
    std::memcpy(out, h.data(), h.size());
}

}  // extern "C"
