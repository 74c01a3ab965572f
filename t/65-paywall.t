# The browser paywall: a browser (Accept text/html, User-Agent Mozilla) at a
# priced location gets an HTML 402 page with the price in display units,
# the network and what to do, PAYMENT-REQUIRED still set; agents get the
# JSON 402; `x402_paywall off` and `error_page 402` replace the page, for
# browsers only. Rendered in a real headless Chromium: the DOM shows the
# price, and an injected description stays text (HTML and <script> JSON
# escaping). Set X402_SCREENSHOT=docs/paywall.png to refresh the picture.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use POSIX ();

plan skip_all => 'module not built' unless -f module_path();

my $CHROMIUM = (grep { -x } map { "$_/chromium" } split /:/, $ENV{PATH})[0];

my $EVIL = q{</script><script>document.title='pwned'</script>}
         . q{<script>alert(1)</script><img src=x onerror="document.title='pwned'">};
(my $evil_conf = $EVIL) =~ s/(["\\])/\\$1/g;

my $ng = start_nginx(config => <<"EOC");
    x402_pay_to       0x209693Bc6afc0C5328bA36FaF03C514EF312287C;
    x402_network      base-sepolia;
    x402_facilitator  /_x402/;

    location /article {
        x402_price        0.001;
        x402_description  "$evil_conf";
        x402_mime_type    text/html;
    }

    location /report {
        x402_price        1.25;
        x402_network      base;
        x402_description  "Quarterly report: revenue & costs, 40 pages";
    }

    location /api {
        x402_price    0.001;
        x402_paywall  off;
    }

    location /own {
        x402_price  0.001;
        error_page  402 /paywall.html;
    }

    location = /paywall.html {
        internal;
    }

    location /_x402/ {
        internal;
        return 500;
    }
EOC

open my $fh, '>', $ng->html_dir . '/paywall.html' or die $!;
print $fh "<html><body><h1>Our own paywall</h1></body></html>\n";
close $fh;

my $BROWSER = {
    'User-Agent' => 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 '
                  . '(KHTML, like Gecko) Chrome/120.0 Safari/537.36',
    Accept => 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
};

# browser: the HTML page, PAYMENT-REQUIRED kept
my $r = $ng->get('/article', $BROWSER);
is($r->{status}, 402, 'browser: 402');
like(X402::HTTP::header($r, 'Content-Type'), qr{^text/html}, 'browser: HTML');
my $pr = decode_b64_json(X402::HTTP::header($r, 'PAYMENT-REQUIRED'));
is($pr->{accepts}[0]{amount}, '1000', 'browser: PAYMENT-REQUIRED still set');
like($r->{body}, qr{<span class="x402-price">0\.001</span> <span class="x402-asset-name">USDC</span>},
     'browser: price in display units');
like($r->{body}, qr{base-sepolia \(eip155:84532\)}, 'browser: network');
like($r->{body}, qr{0x209693Bc6afc0C5328bA36FaF03C514EF312287C}, 'browser: payTo');
like($r->{body}, qr{requires an x402 payment}, 'browser: what to do');
unlike($r->{body}, qr{<script>alert}, 'browser: no raw injected script');
unlike($r->{body}, qr{<img src=x}, 'browser: no raw injected img');
like($r->{body}, qr{&lt;script&gt;alert\(1\)&lt;/script&gt;},
     'browser: description HTML-escaped');
my ($json) = $r->{body} =~ m{<script type="application/json" id="x402-payment-required">(.*?)</script>}s;
ok(defined $json, 'browser: requirements embedded as JSON');
unlike($json // '', qr{[<>]}, 'browser: no < or > inside the <script>');
my $embedded = eval { json_decode($json) };
is($embedded && $embedded->{accepts}[0]{description}, $EVIL,
   'browser: embedded JSON decodes to the exact description');

# the request URL is attacker-controlled: escaped too
$r = $ng->get(q{/article?q="><script>alert(2)</script>&'x'}, $BROWSER);
is($r->{status}, 402, 'browser, hostile query: 402');
unlike($r->{body}, qr{<script>alert\(2\)}, 'browser: query not injected');
like($r->{body}, qr{<dd id="x402-resource">[^<]*\?q=&quot;&gt;&lt;script&gt;alert\(2\)&lt;/script&gt;&amp;&#39;x&#39;</dd>},
     'browser: resource URL HTML-escaped');

# HEAD: headers only
$r = $ng->request("HEAD /article", join("\n", map { "$_: $BROWSER->{$_}" } keys %$BROWSER));
is($r->{status}, 402, 'browser HEAD: 402');
is($r->{body}, '', 'browser HEAD: no body');

# display units: 1.25 USD Coin on base is USDC, 1250000 atomic
$r = $ng->get('/report', $BROWSER);
like($r->{body}, qr{<span class="x402-price">1\.25</span> <span class="x402-asset-name">USDC</span>},
     'browser: 1.25 USDC');
like($r->{body}, qr{revenue &amp; costs}, 'browser: & escaped');

# agents: JSON, whatever their User-Agent, when they do not ask for HTML
for my $h ({ 'User-Agent' => 'python-httpx/0.27' },
           { 'User-Agent' => $BROWSER->{'User-Agent'}, Accept => 'application/json' },
           { 'User-Agent' => 'curl/8', Accept => 'text/html' }) {
    $r = $ng->get('/article', $h);
    is($r->{status}, 402, "agent $h->{'User-Agent'}: 402");
    like(X402::HTTP::header($r, 'Content-Type'), qr{^application/json},
         "agent: JSON");
    is(json_decode($r->{body})->{x402Version}, 1, 'agent: the v1 body');
}

# x402_paywall off: browsers get the JSON
$r = $ng->get('/api', $BROWSER);
is($r->{status}, 402, 'paywall off: 402');
like(X402::HTTP::header($r, 'Content-Type'), qr{^application/json}, 'paywall off: JSON');

# error_page 402: the operator's page for browsers, status and header kept;
# agents still get the JSON
$r = $ng->get('/own', $BROWSER);
is($r->{status}, 402, 'error_page: 402');
like($r->{body}, qr{Our own paywall}, "error_page: the operator's page");
ok(defined X402::HTTP::header($r, 'PAYMENT-REQUIRED'), 'error_page: PAYMENT-REQUIRED kept');
$r = $ng->get('/own', { 'User-Agent' => 'agent/1' });
is($r->{status}, 402, 'error_page, agent: 402');
like(X402::HTTP::header($r, 'Content-Type'), qr{^application/json}, 'error_page, agent: JSON');

# a real browser
SKIP: {
    skip 'chromium not installed (apt-get install chromium)', 8 unless $CHROMIUM;

    my $url = 'http://127.0.0.1:' . $ng->port;
    my ($rc, $dom) = chromium('--dump-dom', "$url/article");
    is($rc, 0, 'chromium: --dump-dom ran');
    like($dom, qr{<span class="x402-price">0\.001</span>}, 'chromium DOM: the price');
    like($dom, qr{<title>402 Payment Required</title>}, 'chromium DOM: title untouched (no script ran)');
    unlike($dom, qr{<title>[^<]*pwned}, 'chromium DOM: injected script did not run');
    my ($desc) = $dom =~ m{<p class="desc" id="x402-description">(.*?)</p>}s;
    like($desc // '', qr{^&lt;/script&gt;&lt;script&gt;}, 'chromium DOM: description is text');
    unlike($dom, qr{<img src="x"}, 'chromium DOM: no injected element');
    my @scripts = $dom =~ m{<script\b}g;
    is(scalar @scripts, 1, 'chromium DOM: only the JSON <script>');

    my $png = $ENV{X402_SCREENSHOT} || servroot() . '/paywall.png';
    ($rc) = chromium("--screenshot=$png", '--window-size=900,800',
                     '--hide-scrollbars', "$url/report");
    ok(-s $png && -s $png > 10_000, "chromium: screenshot $png")
        or diag("rc $rc");
}

$ng->stop;
unlike($ng->error_log, qr/\[(alert|crit|emerg)\]/, 'no alerts');

sub chromium {
    my @args = @_;
    my $profile = servroot() . '/chromium-' . int(rand(1e9));
    pipe(my $r, my $w) or die $!;
    my $pid = fork // die $!;
    if (!$pid) {
        close $r;
        open STDOUT, '>&', $w;
        open STDERR, '>', '/dev/null';
        setpgrp(0, 0);
        exec $CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu',
             '--disable-quic', '--no-first-run',
             '--disable-background-networking', '--disable-component-update',
             '--disable-sync', "--user-data-dir=$profile", @args
            or POSIX::_exit(127);
    }
    close $w;
    my $out = '';
    my $ok = eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm 60;
        local $/;
        $out = <$r> // '';
        alarm 0;
        1;
    };
    if (!$ok) {
        kill 'KILL', -$pid;
    }
    close $r;
    waitpid $pid, 0;
    return ($ok ? $? >> 8 : -1, $out);
}

done_testing();
