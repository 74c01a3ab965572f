// extern "C" shims for the payment half of the core: every entry point
// catches everything and turns it into an error return, so no exception
// ever unwinds into nginx.
#include <cstring>
#include <memory>
#include <new>
#include <string_view>

#include "base64.hpp"
#include "keccak.hpp"
#include "payment.hpp"
#include "x402/x402.h"

extern "C" {

x402_payment_t *x402_payment_decode(x402_str_t header, int version_hint,
                                    x402_verdict_t *v)
{
    std::memset(v, 0, sizeof(*v));
    try {
        auto p = std::make_unique<x402_payment_s>();
        const char *reason = nullptr;
        const char *message = nullptr;
        std::string_view h(header.data ? header.data : "",
                           header.data ? header.len : 0);
        if (!x402::payment_decode(h, version_hint, *p, &reason, &message)) {
            v->version = p->version;
            v->reason = reason;
            v->message = message;
            return nullptr;
        }
        x402::payment_fill_verdict(*p, v);
        return p.release();
    } catch (const std::bad_alloc &) {
        std::memset(v, 0, sizeof(*v));
        return nullptr;
    } catch (...) {
        std::memset(v, 0, sizeof(*v));
        v->reason = x402::reason::invalid_payload;
        v->message = "payment header could not be decoded";
        return nullptr;
    }
}

void x402_payment_free(x402_payment_t *p)
{
    // The destructor of strings and vectors cannot throw.
    delete p;
}

int x402_payment_verify(x402_payment_t *p, const x402_offer_t *offer,
                        int64_t now, x402_verdict_t *v)
{
    try {
        if (p == nullptr) {
            std::memset(v, 0, sizeof(*v));
            v->reason = x402::reason::invalid_payload;
            v->message = "no payment";
            return -1;
        }
        return x402::payment_verify(*p, offer, now, v) ? 0 : -1;
    } catch (...) {
        v->ok = 0;
        v->signature_unchecked = 0;
        v->reason = "unexpected_verify_error";
        v->message = "local verification failed unexpectedly";
        return -1;
    }
}

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
