#include "bazaar.hpp"

#include <jansson.h>

#include <cstdlib>
#include <memory>
#include <new>

#include "facilitator.hpp"
#include "x402/x402.h"

namespace x402 {

namespace {

struct JsonDeleter {
    void operator()(json_t *j) const noexcept { json_decref(j); }
};
using Json = std::unique_ptr<json_t, JsonDeleter>;
struct FreeDeleter {
    void operator()(char *p) const noexcept { std::free(p); }
};

json_t *checked(json_t *j)
{
    if (j == nullptr) {
        throw std::bad_alloc();
    }
    return j;
}

// Steals v.
void set(json_t *obj, const char *key, json_t *v)
{
    if (json_object_set_new(obj, key, checked(v)) != 0) {
        throw std::bad_alloc();
    }
}

json_t *str(std::string_view s)
{
    return checked(json_stringn(s.data(), s.size()));
}

json_t *str_array(std::initializer_list<std::string_view> items)
{
    json_t *a = checked(json_array());
    for (auto s : items) {
        json_array_append_new(a, str(s));
    }
    return a;
}

json_t *typed(const char *type)
{
    json_t *o = checked(json_object());
    set(o, "type", json_string(type));
    return o;
}

// Parses an operator-supplied JSON value within the bounds; empty text is
// "absent" (returns a null Json and true).
bool parse(std::string_view text, Json &out, const char **err,
           const char *what)
{
    out.reset();
    if (text.empty()) {
        return true;
    }
    if (text.size() > bazaar_max_json
        || !json_depth_within(text, bazaar_max_depth)) {
        *err = what;
        return false;
    }
    json_error_t e;
    out.reset(json_loadb(text.data(), text.size(),
                         JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e));
    if (!out) {
        *err = what;
        return false;
    }
    return true;
}

}  // namespace

std::optional<std::string> bazaar_extensions(const BazaarInput &in,
                                             const char **err)
{
    const std::string_view m = in.method;
    const bool query = m == "GET" || m == "HEAD" || m == "DELETE";
    const bool body = m == "POST" || m == "PUT" || m == "PATCH";
    if (!query && !body) {
        *err = "the bazaar method must be GET, HEAD, DELETE, POST, PUT or "
               "PATCH";
        return std::nullopt;
    }
    Json qp, bd, ischema, oex, oschema;
    if (!parse(in.query_params, qp, err,
               "bazaar query parameters must be a JSON object of at most "
               "8192 bytes and 8 levels")
        || (qp && !json_is_object(qp.get()))) {
        *err = "bazaar query parameters must be a JSON object of at most "
               "8192 bytes and 8 levels";
        return std::nullopt;
    }
    if (!parse(in.body, bd, err,
               "the bazaar body example must be a JSON object or string of "
               "at most 8192 bytes and 8 levels")
        || (bd && !json_is_object(bd.get()) && !json_is_string(bd.get()))) {
        *err = "the bazaar body example must be a JSON object or string of "
               "at most 8192 bytes and 8 levels";
        return std::nullopt;
    }
    if (!parse(in.input_schema, ischema, err,
               "the bazaar input schema must be a JSON object of at most "
               "8192 bytes and 8 levels")
        || (ischema && !json_is_object(ischema.get()))) {
        *err = "the bazaar input schema must be a JSON object of at most "
               "8192 bytes and 8 levels";
        return std::nullopt;
    }
    if (!parse(in.output_example, oex, err,
               "the bazaar output example must be a JSON object of at most "
               "8192 bytes and 8 levels")
        || (oex && !json_is_object(oex.get()))) {
        *err = "the bazaar output example must be a JSON object of at most "
               "8192 bytes and 8 levels";
        return std::nullopt;
    }
    if (!parse(in.output_schema, oschema, err,
               "the bazaar output schema must be a JSON object of at most "
               "8192 bytes and 8 levels")
        || (oschema && !json_is_object(oschema.get()))) {
        *err = "the bazaar output schema must be a JSON object of at most "
               "8192 bytes and 8 levels";
        return std::nullopt;
    }
    if (query && (!in.body_type.empty() || bd)) {
        *err = "a bazaar body type or body belongs to POST, PUT or PATCH";
        return std::nullopt;
    }
    if (body) {
        if (qp) {
            // declareDiscoveryExtension's body form has no queryParams
            // example (its schema would then refuse it).
            *err = "bazaar query parameters belong to GET, HEAD or DELETE";
            return std::nullopt;
        }
        const std::string_view bt = in.body_type;
        if (bt != "json" && bt != "form-data" && bt != "text") {
            *err = "the bazaar body type must be json, form-data or text";
            return std::nullopt;
        }
    }
    if (oschema && !oex) {
        *err = "a bazaar output schema needs an output example";
        return std::nullopt;
    }

    // info
    Json info(checked(json_object()));
    json_t *input = checked(json_object());
    set(info.get(), "input", input);
    set(input, "type", json_string("http"));
    set(input, "method", str(m));
    if (query) {
        set(input, "queryParams", qp ? json_incref(qp.get()) : json_object());
    } else {
        set(input, "bodyType", str(in.body_type));
        set(input, "body", bd ? json_incref(bd.get()) : json_object());
    }
    if (oex) {
        json_t *out = checked(json_object());
        set(info.get(), "output", out);
        set(out, "type", json_string("json"));
        set(out, "example", json_incref(oex.get()));
    }

    // schema
    Json schema(checked(json_object()));
    set(schema.get(), "$schema",
        json_string("https://json-schema.org/draft/2020-12/schema"));
    set(schema.get(), "type", json_string("object"));
    json_t *props = checked(json_object());
    set(schema.get(), "properties", props);
    json_t *sin = typed("object");
    set(props, "input", sin);
    json_t *iprops = checked(json_object());
    set(sin, "properties", iprops);
    json_t *t = typed("string");
    set(t, "const", json_string("http"));
    set(iprops, "type", t);
    json_t *me = typed("string");
    set(me, "enum", str_array({m}));
    set(iprops, "method", me);
    json_t *default_schema = checked(json_object());
    set(default_schema, "properties", json_object());
    Json given(ischema ? json_incref(ischema.get()) : default_schema);
    if (ischema) {
        json_decref(default_schema);
    }
    if (query) {
        // {type:"object", ...inputSchema}: a "type" in the schema replaces
        // the value in place, as a JavaScript spread does.
        json_t *q = typed("object");
        if (json_object_update(q, given.get()) != 0) {
            json_decref(q);
            throw std::bad_alloc();
        }
        set(iprops, "queryParams", q);
        set(sin, "required", str_array({"type", "method"}));
    } else {
        json_t *bt = typed("string");
        set(bt, "enum", str_array({"json", "form-data", "text"}));
        set(iprops, "bodyType", bt);
        set(iprops, "body", json_incref(given.get()));
        set(sin, "required", str_array({"type", "method", "bodyType", "body"}));
    }
    set(sin, "additionalProperties", json_false());
    if (oex) {
        json_t *so = typed("object");
        set(props, "output", so);
        json_t *oprops = checked(json_object());
        set(so, "properties", oprops);
        set(oprops, "type", typed("string"));
        json_t *ex = typed("object");
        if (oschema && json_object_update(ex, oschema.get()) != 0) {
            json_decref(ex);
            throw std::bad_alloc();
        }
        set(oprops, "example", ex);
        set(so, "required", str_array({"type"}));
    }
    set(schema.get(), "required", str_array({"input"}));

    Json root(checked(json_object()));
    json_t *bazaar = checked(json_object());
    set(root.get(), "bazaar", bazaar);
    set(bazaar, "info", json_incref(info.get()));
    set(bazaar, "schema", json_incref(schema.get()));
    std::unique_ptr<char, FreeDeleter> text(json_dumps(
        root.get(), JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII));
    if (!text) {
        throw std::bad_alloc();
    }
    std::string out(text.get());
    if (out.size() > bazaar_max_json) {
        *err = "the bazaar extension is over 8192 bytes of JSON, more than a "
               "client's echo of it fits in a payment header";
        return std::nullopt;
    }
    return out;
}

}  // namespace x402
