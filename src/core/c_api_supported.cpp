// extern "C" shims for GET /supported: every entry point catches
// everything, so no exception unwinds into nginx.
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <string_view>

#include "networks.hpp"
#include "supported.hpp"
#include "x402/x402.h"

struct x402_supported_s {
    x402::Supported s;
};

namespace {

std::string_view view(x402_str_t s) noexcept
{
    return std::string_view(s.data ? s.data : "", s.data ? s.len : 0);
}

}  // namespace

extern "C" {

x402_supported_t *x402_supported_parse(int status, x402_str_t body,
                                       const x402_allocator_t *a,
                                       x402_str_t *err)
{
    err->data = nullptr;
    err->len = 0;
    try {
        auto p = std::make_unique<x402_supported_s>();
        std::string e;
        if (x402::supported_parse(status, view(body), p->s, e)) {
            return p.release();
        }
        auto *m = static_cast<char *>(a->alloc(a->ctx, e.size()));
        if (m != nullptr) {
            std::memcpy(m, e.data(), e.size());
            err->data = m;
            err->len = e.size();
        }
        return nullptr;
    } catch (...) {
        return nullptr;
    }
}

void x402_supported_free(x402_supported_t *s)
{
    delete s;
}

size_t x402_supported_count(const x402_supported_t *s)
{
    return s->s.kinds.size();
}

int x402_supported_find(const x402_supported_t *s, int version,
                        x402_str_t scheme, x402_str_t network,
                        x402_str_t *extra)
{
    const auto *k = s->s.find(version, view(scheme), view(network));
    if (k == nullptr) {
        return 0;
    }
    if (extra != nullptr) {
        extra->data = k->extra.data();
        extra->len = k->extra.size();
    }
    return 1;
}

int x402_supported_has_extension(const x402_supported_t *s, x402_str_t name)
{
    return s->s.has_extension(view(name)) ? 1 : 0;
}

int x402_supported_requirement(const x402_supported_t *s,
                               const x402_requirement_t *r, int *v1)
{
    std::string_view scheme = view(r->scheme);
    if (v1 != nullptr) {
        *v1 = x402::network_is_legacy_v1(r->network)
                      && s->s.find(1, scheme, r->network->v1_name) != nullptr
                  ? 1
                  : 0;
    }
    return s->s.find(2, scheme, r->network->caip2) != nullptr ? 1 : 0;
}

}  // extern "C"
