// extern "C" shim for the bazaar discovery extension: catches everything,
// so no exception unwinds into nginx.
#include <cstring>
#include <string_view>

#include "bazaar.hpp"
#include "x402/x402.h"

namespace {

std::string_view view(x402_str_t s) noexcept
{
    return std::string_view(s.data ? s.data : "", s.data ? s.len : 0);
}

}  // namespace

extern "C" {

int x402_bazaar_render(const x402_bazaar_t *b, const x402_allocator_t *a,
                       x402_str_t *out, const char **err)
{
    try {
        x402::BazaarInput in{view(b->method),        view(b->query_params),
                             view(b->body_type),     view(b->body),
                             view(b->input_schema),  view(b->output_example),
                             view(b->output_schema)};
        const char *e = nullptr;
        auto j = x402::bazaar_extensions(in, &e);
        if (!j) {
            *err = e;
            return -1;
        }
        auto *p = static_cast<char *>(a->alloc(a->ctx, j->size()));
        if (p == nullptr) {
            *err = "out of memory";
            return -1;
        }
        std::memcpy(p, j->data(), j->size());
        out->data = p;
        out->len = j->size();
        return 0;
    } catch (...) {
        *err = "out of memory";
        return -1;
    }
}

}  // extern "C"
