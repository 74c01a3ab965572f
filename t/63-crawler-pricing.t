# Pricing by client class, with conf-examples/crawler-pricing.conf and
# static-for-agents.conf as shipped (addresses and paths substituted): AI
# crawlers get a 402 with the crawler price, people read free, and a
# crawler that pays reads.
use strict;
use warnings;
use lib 't/lib';
use X402::Test;
use X402::Examples qw(example_conf);

plan skip_all => 'module not built' unless -f module_path();

my $fac = start_facilitator(script => "verify: default\nsettle: default\n");
my $prefix = servroot() . '/crawler-pricing';
my ($conf, $ports) = example_conf(repo_root() . '/conf-examples/crawler-pricing.conf',
                                  prefix => $prefix, fac_port => $fac->port);
my $ng = X402::Nginx->new(raw_conf => $conf, prefix => $prefix,
                          port => 0, name => 'crawler-pricing');
$ng->{port} = $ports->[0];
open my $fh, '>', "$prefix/html/article.html" or die $!;
print $fh "<p>an article</p>\n";
close $fh;
$ng->start;

my $BROWSER = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 '
            . '(KHTML, like Gecko) Chrome/120.0 Safari/537.36';
my %UA = (
    GPTBot => 'Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; '
            . 'compatible; GPTBot/1.2; +https://openai.com/gptbot)',
    ClaudeBot => 'Mozilla/5.0 (compatible; ClaudeBot/1.0; +claudebot@anthropic.com)',
    PerplexityBot => 'Mozilla/5.0 (compatible; PerplexityBot/1.0)',
    CCBot => 'CCBot/2.0 (https://commoncrawl.org/faq/)',
);

# people: free, no trace of x402
for my $ua ($BROWSER, 'curl/8.0') {
    my $r = $ng->get('/article.html', { 'User-Agent' => $ua });
    is($r->{status}, 200, "'$ua': 200, free");
    is($r->{body}, "<p>an article</p>\n", "'$ua': the content");
    ok(!defined X402::HTTP::header($r, 'PAYMENT-REQUIRED'),
       "'$ua': no PAYMENT-REQUIRED");
}

# crawlers: 402 at 0.002 USDC (2000 atomic units on base)
my %hdr;
for my $bot (sort keys %UA) {
    my $r = $ng->get('/article.html', { 'User-Agent' => $UA{$bot},
                                        Accept => 'application/json' });
    is($r->{status}, 402, "$bot: 402");
    my $pr = decode_b64_json(X402::HTTP::header($r, 'PAYMENT-REQUIRED'));
    is($pr->{accepts}[0]{amount}, '2000', "$bot: priced 0.002");
    is($pr->{accepts}[0]{network}, 'eip155:8453', "$bot: on base");
    unlike($r->{body}, qr/an article/, "$bot: no content");
    $hdr{$bot} = X402::HTTP::header($r, 'PAYMENT-REQUIRED');
}

# a crawler that pays reads
my ($pay) = sign_payment(payment_required => $hdr{GPTBot});
my $r = $ng->get('/article.html', { 'User-Agent' => $UA{GPTBot},
                                    'PAYMENT-SIGNATURE' => $pay });
is($r->{status}, 200, 'GPTBot paying: 200');
is($r->{body}, "<p>an article</p>\n", 'GPTBot paying: the content');
ok(defined X402::HTTP::header($r, 'PAYMENT-RESPONSE'), 'GPTBot: PAYMENT-RESPONSE');

$ng->stop;
unlike($ng->error_log, qr/\[(alert|crit|emerg)\]/, 'no alerts');

# conf-examples/static-for-agents.conf: two crawler prices, free robots.txt
# and assets, pages verified locally and settled in the background
{
    my $p2 = servroot() . '/static-for-agents';
    my ($c2, $ports2) = example_conf(
        repo_root() . '/conf-examples/static-for-agents.conf',
        prefix => $p2, fac_port => $fac->port);
    my $sa = X402::Nginx->new(raw_conf => $c2, prefix => $p2,
                              name => 'static-for-agents');
    $sa->{port} = $ports2->[0];
    mkdir "$p2/html/assets";
    for my $f ('page.html', 'robots.txt', 'assets/app.css') {
        open my $out, '>', "$p2/html/$f" or die $!;
        print $out "$f\n";
        close $out;
    }
    $sa->start;

    my $res = $sa->get('/page.html', { 'User-Agent' => $BROWSER });
    is($res->{status}, 200, 'static: people read free');
    $res = $sa->get('/page.html', { 'User-Agent' => 'Mozilla/5.0 (compatible; Bytespider)' });
    is($res->{status}, 402, 'static: Bytespider pays');
    is(decode_b64_json(X402::HTTP::header($res, 'PAYMENT-REQUIRED'))->{accepts}[0]{amount},
       '5000', 'static: the bulk price 0.005');
    for my $f ('/robots.txt', '/assets/app.css') {
        is($sa->get($f, { 'User-Agent' => $UA{GPTBot} })->{status}, 200,
           "static: $f free for crawlers");
    }
    $res = $sa->get('/page.html', { 'User-Agent' => $UA{GPTBot} });
    is($res->{status}, 402, 'static: GPTBot pays');
    my ($sp) = sign_payment(payment_required => X402::HTTP::header($res, 'PAYMENT-REQUIRED'));
    $res = $sa->get('/page.html', { 'User-Agent' => $UA{GPTBot},
                                    'PAYMENT-SIGNATURE' => $sp });
    is($res->{status}, 200, 'static: served on local checks (async settle)');
    is($res->{body}, "page.html\n", 'static: the page');
    $sa->stop;
    unlike($sa->error_log, qr/\[(alert|crit|emerg)\]/, 'static: no alerts');
}

$fac->stop;

done_testing();
