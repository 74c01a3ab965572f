# x402_settle sync (the default until x402_settle after took its place;
# said explicitly here): a payment signed now with viem is checked
# locally, verified and settled by the (scripted) facilitator, then served
# with PAYMENT-RESPONSE (v2) or X-PAYMENT-RESPONSE (v1). Every local failure
# is a 402 naming the reason (header `error`, v1 body, log) and never
# reaches the facilitator. The $x402_* variables reach the access log.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;

plan skip_all => 'module not built' unless -f module_path();

my $PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';
my $FROM = '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266';    # Anvil #0

my $HTTP = <<'EOH';
    log_format x402 '$x402_status|$x402_reason|$x402_payer|$x402_amount|$x402_network|$x402_tx|$x402_payment_id|$status';
EOH

sub server_conf {
    my ($fac, $extra) = @_;
    $extra //= '';
    my $port = $fac->port;
    return <<"EOC";
access_log logs/x402.log x402;
x402_price 0.001;
x402_pay_to $PAY_TO;
x402_network base-sepolia;
x402_facilitator /_x402/;
x402_settle sync;
$extra
location /_x402/ {
    internal;
    proxy_pass http://127.0.0.1:$port/;
}
location /local/ {
    x402_verify local;
}
EOC
}

sub x402_log {
    my ($ng) = @_;
    open my $fh, '<', $ng->prefix . '/logs/x402.log' or return ();
    my @l = map { chomp; [ split /\|/, $_, -1 ] } <$fh>;
    return @l;
}

my $files = ">>> doc.txt\npaid content\n>>> local/doc.txt\nlocal content\n";

# a valid v2 payment, the facilitator's view of it, and the variables
{
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $ng = start_nginx(http_config => $HTTP, config => server_conf($fac),
                         user_files => $files);

    my $r = $ng->get('/doc.txt?q=1');
    is($r->{status}, 402, 'v2: unpaid is 402');
    my $pr = decode_b64_json(X402::HTTP::header($r, 'PAYMENT-REQUIRED'));
    is($pr->{resource}{url}, 'http://localhost/doc.txt?q=1',
       'v2: resource.url is the absolute URL asked for');

    my ($hdr, $p) = sign_payment(payment_required =>
                                 X402::HTTP::header($r, 'PAYMENT-REQUIRED'));
    $r = $ng->get('/doc.txt?q=1', { 'PAYMENT-SIGNATURE' => $hdr,
                                    'Cookie' => 'secret=1',
                                    'Authorization' => 'Bearer nope' });
    is($r->{status}, 200, 'v2: paid is 200');
    is($r->{body}, "paid content\n", 'v2: content served');
    my $resp = decode_b64_json(X402::HTTP::header($r, 'PAYMENT-RESPONSE'));
    ok($resp->{success}, 'v2: PAYMENT-RESPONSE success');
    like($resp->{transaction}, qr/^0x[0-9a-f]{64}$/, 'v2: transaction');
    is($resp->{payer}, $FROM, 'v2: payer');
    ok(!defined X402::HTTP::header($r, 'X-PAYMENT-RESPONSE'),
       'v2: no X-PAYMENT-RESPONSE');
    like(X402::HTTP::header($r, 'Access-Control-Expose-Headers') // '',
         qr/PAYMENT-RESPONSE/, 'v2: PAYMENT-RESPONSE exposed to browsers');

    my @seen = $fac->requests;
    is(join(' ', map { $_->{endpoint} } @seen), 'verify settle',
       'v2: verify then settle');
    is($seen[0]{body}, $seen[1]{body}, 'v2: the same bytes to both');
    is($seen[0]{method}, 'POST', 'v2: POST');
    like($seen[0]{headers}{'content-type'}, qr{^application/json},
         'v2: JSON content type');
    is($seen[0]{headers}{'content-length'}, length $seen[0]{body},
       'v2: content length');
    ok(!exists $seen[0]{headers}{cookie}, 'v2: client cookie not forwarded');
    ok(!exists $seen[0]{headers}{authorization},
       'v2: client authorization not forwarded');
    ok(!exists $seen[0]{headers}{'payment-signature'},
       'v2: payment header not forwarded');
    my $j = $seen[0]{json};
    is($j->{x402Version}, 2, 'v2: x402Version');
    is_deeply($j->{paymentPayload}, $p, 'v2: the client payload as sent');
    is($j->{paymentRequirements}{amount}, '1000', 'v2: our requirement');
    is($j->{paymentRequirements}{payTo}, $PAY_TO, 'v2: payTo');

    $ng->stop;
    my @log = x402_log($ng);
    is($log[0][0], 'required', 'log: required');
    is($log[0][3], '1000', 'log: amount of the 402');
    is($log[0][4], 'eip155:84532', 'log: network of the 402');
    is($log[1][0], 'settled', 'log: settled');
    is($log[1][2], $FROM, 'log: payer');
    is($log[1][5], $resp->{transaction}, 'log: tx');
    like($log[1][6], qr/^[0-9a-f]{64}$/, 'log: payment id');
    is($log[1][7], '200', 'log: status');
    $fac->stop;
}

# v1 (X-PAYMENT, legacy clients reading the JSON body)
{
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $ng = start_nginx(http_config => $HTTP, config => server_conf($fac),
                         user_files => $files);
    my $r = $ng->get('/doc.txt');
    my ($hdr) = sign_payment(payment_required_body => $r->{body});
    $r = $ng->get('/doc.txt', { 'X-PAYMENT' => $hdr });
    is($r->{status}, 200, 'v1: paid is 200');
    my $resp = decode_b64_json(X402::HTTP::header($r, 'X-PAYMENT-RESPONSE'));
    ok($resp && $resp->{success}, 'v1: X-PAYMENT-RESPONSE success');
    ok(!defined X402::HTTP::header($r, 'PAYMENT-RESPONSE'),
       'v1: no PAYMENT-RESPONSE');
    my @seen = $fac->requests;
    is($seen[0]{json}{x402Version}, 1, 'v1: facilitator body is v1');
    is($seen[0]{json}{paymentRequirements}{maxAmountRequired}, '1000',
       'v1: v1 requirement');
    is($seen[0]{json}{paymentRequirements}{resource},
       'http://localhost/doc.txt', 'v1: requirement carries the resource');
    $ng->stop;
    $fac->stop;
}

# x402_verify local: no /verify, settle directly; a smart-wallet signature
# (not checkable locally) still goes to /verify first
{
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $ng = start_nginx(http_config => $HTTP, config => server_conf($fac),
                         user_files => $files);
    my $r = $ng->get('/local/doc.txt', { 'PAYMENT-SIGNATURE' => scalar
                                         sign_payment(amount => '1000') });
    is($r->{status}, 200, 'verify local: served');
    is(join(' ', map { $_->{endpoint} } $fac->requests), 'settle',
       'verify local: settle only');

    $r = $ng->get('/local/doc.txt', { 'PAYMENT-SIGNATURE' => scalar
                                      sign_payment(amount => '1000',
                                                   sig_len => 100) });
    is($r->{status}, 200, 'smart wallet: served after the facilitator');
    is(join(' ', map { $_->{endpoint} } $fac->requests),
       'settle verify settle', 'smart wallet: /verify required');
    $ng->stop;
    $fac->stop;
}

# local failures: 402 with the reason, and the facilitator hears nothing
{
    my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
    my $ng = start_nginx(http_config => $HTTP, config => server_conf($fac),
                         user_files => $files);
    my $now = time;
    my @cases = (
        [ 'value', 'invalid_exact_evm_payload_authorization_value_mismatch',
          { value_override => '999' } ],
        [ 'recipient', 'invalid_exact_evm_payload_recipient_mismatch',
          { to_override => '0x1111111111111111111111111111111111111111' } ],
        [ 'expired', 'invalid_exact_evm_payload_authorization_valid_before',
          { valid_before => $now + 3 } ],
        [ 'not yet valid', 'invalid_exact_evm_payload_authorization_valid_after',
          { valid_after => $now + 3600 } ],
        [ 'high s', 'invalid_exact_evm_payload_signature', { high_s => 1 } ],
        [ 'v 0/1', 'invalid_exact_evm_payload_signature', { v01 => 1 } ],
        [ 'tampered', 'invalid_exact_evm_payload_signature',
          { flip_sig_byte => 7 } ],
        [ 'wrong domain', 'invalid_exact_evm_payload_signature',
          { domain_name => 'USD Coin' } ],
        [ 'wrong chain', 'invalid_exact_evm_payload_signature',
          { chain_id => 8453 } ],
        [ 'other amount', 'invalid_payment_requirements',
          { amount => '2000' } ],
        [ 'other network', 'invalid_network', { network => 'base' } ],
        [ 'v1 in PAYMENT-SIGNATURE', 'invalid_x402_version',
          { version => 1 } ],
    );
    for my $c (@cases) {
        my ($name, $reason, $opts) = @$c;
        my $h = sign_payment(amount => '1000', %$opts);
        my $r = $ng->get('/doc.txt', { 'PAYMENT-SIGNATURE' => $h });
        is($r->{status}, 402, "$name: 402");
        my $pr = decode_b64_json(X402::HTTP::header($r, 'PAYMENT-REQUIRED')
                                 // 'e30=');
        is($pr->{error}, $reason, "$name: header error");
        is(eval { json_decode($r->{body})->{error} }, $reason,
           "$name: v1 body error");
        is(scalar @{ $pr->{accepts} // [] }, 1,
           "$name: fresh requirements");
    }

    # malformed headers
    my $good = sign_payment(amount => '1000');
    my @bad = (
        [ 'not base64', { 'PAYMENT-SIGNATURE' => '!!!notbase64' } ],
        [ 'url-safe base64', { 'PAYMENT-SIGNATURE' => scalar
                               do { (my $u = $good) =~ tr{+/}{-_}; "$u-_" } } ],
        [ 'not JSON', { 'PAYMENT-SIGNATURE' => 'bm90IGpzb24=' } ],
        [ 'two headers', "PAYMENT-SIGNATURE: $good\nPAYMENT-SIGNATURE: $good" ],
        [ 'lower case, repeated', "payment-signature: $good\nPayment-Signature: $good" ],
    );
    for my $c (@bad) {
        my ($name, $hdrs) = @$c;
        my $r = ref $hdrs ? $ng->get('/doc.txt', $hdrs)
                          : $ng->request('GET /doc.txt', $hdrs);
        is($r->{status}, 402, "$name: 402");
        my $pr = decode_b64_json(X402::HTTP::header($r, 'PAYMENT-REQUIRED')
                                 // 'e30=');
        like($pr->{error} // '', qr/^invalid_/, "$name: an invalid_* reason");
    }

    is(scalar(() = $fac->requests), 0,
       'local failures: the facilitator saw nothing');
    $ng->stop;
    my $log = $ng->error_log;
    like($log, qr/\[info\].*x402: payment refused: invalid_exact_evm_payload_signature: /,
         'log: reason and detail at info');
    like($log, qr/x402: payment refused: invalid_payload: more than one payment header/,
         'log: repeated header');
    unlike($log, qr/\[(error|crit|alert|emerg)\]/, 'log: no errors');
    unlike($log, qr/eyJ4NDAy/, 'log: no payment payload above debug');
    my @l = x402_log($ng);
    is($l[0][0], 'invalid', 'var: status invalid');
    is($l[0][1], 'invalid_exact_evm_payload_authorization_value_mismatch',
       'var: reason');
    is($l[0][2], $FROM, 'var: payer known when the check failed');
    $fac->stop;
}

# x402_log_level raises client failures
{
    my $fac = start_facilitator(script => "verify: default\n");
    my $ng = start_nginx(http_config => $HTTP,
                         config => server_conf($fac, 'x402_log_level warn;'),
                         user_files => $files);
    $ng->get('/doc.txt', { 'PAYMENT-SIGNATURE' => 'bm90IGpzb24=' });
    $ng->stop;
    like($ng->error_log, qr/\[warn\].*x402: payment refused: invalid_payload/,
         'log level warn');
    $fac->stop;
}

done_testing();
