/**
 * containerd 2.x's image verifier as a perl script: the default client (`pullguard verifier install`).
 * containerd runs a verifier for every pull, between resolving and fetching, so its start-up is on
 * every pull's critical path: perl starts in ~3 ms where node takes ~100 ms (the node client,
 * verifier-client.ts, is the fallback where no perl is installed). It uses only perl's built-ins
 * and `strict` (both in Debian's essential perl-base): raw unix socket, HTTP/1.1 with
 * `Connection: close`, select() for every wait. It says what the node client says, in the same
 * words (test/unit/verifier holds both to it), and speaks protocol.ts to verifier-server.ts.
 */
import {
  clientSays,
  EXIT_ALLOWED,
  EXIT_DENIED,
  EXIT_NO_VERDICT,
  MAX_ANSWER_BYTES,
  MAX_QUESTION_BYTES,
  MAX_REASON_BYTES,
  STATUS_ALLOWED,
  STATUS_DENIED,
  STDIN_WAIT_MS,
  VERIFY_PATH,
} from './protocol.js';

/** A perl single-quoted string: only `\` and `'` are special there. */
const perlQuote = (text: string): string => `'${text.replace(/[\\']/g, (c) => `\\${c}`)}'`;

/** A message of protocol.ts's clientSays as a perl expression, its holes (written `\0`) filled by the perl expressions given. */
function perlMessage(message: string, ...holes: readonly string[]): string {
  return message
    .split('\0')
    .map((part, i) => (i === 0 ? perlQuote(part) : ` . ${holes[i - 1]}${part === '' ? '' : ` . ${perlQuote(part)}`}`))
    .join('');
}

/** The script's body after its `#!` line and header comments: everything it needs is baked in, its words from clientSays. */
export function perlVerifierBody(options: { readonly socket: string; readonly timeoutMs: number }): string {
  const { socket, timeoutMs } = options;
  return `use strict;

my $socket_path = ${perlQuote(socket)};
my $closed_early = ${perlQuote(clientSays.closedEarly(socket))};
# Seconds left for a verdict: every select() below takes its wait from here and gives back the rest.
my $left = ${timeoutMs / 1000};
my ($max_question, $max_answer, $max_reason) = (${MAX_QUESTION_BYTES}, ${MAX_ANSWER_BYTES}, ${MAX_REASON_BYTES});
$SIG{PIPE} = 'IGNORE';    # a daemon that closes early answers on the socket, not with a signal

# One line on stdout (containerd's reason), within what containerd keeps of it, and the exit code.
sub answer {
    my ($code, $line) = @_;
    $line =~ s/[\\r\\n]+/ /g;
    if (length($line) > $max_reason) {
        $line = substr($line, 0, $max_reason - 4);
        $line =~ s/[\\xC0-\\xFF][\\x80-\\xBF]*\\z//;    # never half a UTF-8 character
        $line .= "\\xE2\\x80\\xA6";
    }
    syswrite(STDOUT, "$line\\n");
    exit $code;
}
sub blocked { answer(${EXIT_NO_VERDICT}, ${perlMessage(clientSays.blocked('\0'), '$_[0]')}) }

# Go's flag syntax as containerd uses it (-name X, also --name X and -name=X); unknown flags are skipped with their value.
my %takes_value = map { $_ => 1 } qw(name digest stdin-media-type);
my %flag;
for (my $i = 0; $i < @ARGV; $i++) {
    my ($name, $value) = $ARGV[$i] =~ /\\A--?([A-Za-z][\\w-]*)(?:=(.*))?\\z/s
      or blocked('unexpected argument "' . substr($ARGV[$i], 0, 128) . '"');
    if (!defined $value) {
        my $next = $ARGV[$i + 1];
        if (defined $next && ($takes_value{$name} || $next !~ /\\A-/)) { $value = $next; $i++ }
        else { $value = '' }
    }
    $flag{$name} = $value;
}
my ($image, $digest) = ($flag{name} // '', $flag{digest} // '');
blocked(${perlQuote(clientSays.missingArguments)}) if $image eq '' || $digest eq '';

# Waits until $handle can be read or the time is up; false when it is up.
sub readable {
    my ($handle, $wait) = @_;
    my $bits = '';
    vec($bits, fileno($handle), 1) = 1;
    my ($ready, $rest) = select(my $ready_bits = $bits, undef, undef, $wait > 0 ? $wait : 0);
    return ($ready > 0, $rest);
}

# The descriptor goes to the daemon as containerd wrote it; a stdin that is not containerd's pipe must not hold the verdict up.
my $descriptor = '';
if (($flag{'stdin-media-type'} // '') ne '') {
    my $wait = ${STDIN_WAIT_MS / 1000} < $left / 4 ? ${STDIN_WAIT_MS / 1000} : $left / 4;
    my ($read, $closed) = ('', 0);
    while (!$closed) {
        my ($ready, $rest) = readable(\\*STDIN, $wait);
        $left -= $wait - $rest;
        $wait = $rest;
        last unless $ready;
        my $n = sysread(STDIN, my $chunk, 65536);
        if (!$n) { $closed = defined $n; last }
        $read .= $chunk;
        last if length($read) > $max_question;
    }
    $descriptor = $read if $closed && length($read) <= $max_question;
}

socket(my $daemon, 1, 1, 0) or blocked("asking pullguard on $socket_path: $!");    # AF_UNIX, SOCK_STREAM
if (!connect($daemon, pack('S Z*', 1, $socket_path))) {
    blocked(
          $!{ENOENT}       ? ${perlQuote(clientSays.noDaemon(socket, 'ENOENT'))}
        : $!{ECONNREFUSED} ? ${perlQuote(clientSays.noDaemon(socket, 'ECONNREFUSED'))}
        : $!{EACCES}       ? ${perlQuote(clientSays.mayNotOpen(socket))}
        :                    "asking pullguard on $socket_path: $!"
    );
}
sub query { my $text = shift; $text =~ s/([^A-Za-z0-9._~-])/sprintf('%%%02X', ord $1)/ge; $text }
my $request = 'POST ${VERIFY_PATH}?name=' . query($image) . '&digest=' . query($digest) . " HTTP/1.1\\r\\n"
  . "Host: pullguard\\r\\nContent-Type: application/json\\r\\nContent-Length: " . length($descriptor) . "\\r\\nConnection: close\\r\\n\\r\\n" . $descriptor;
while (length $request) {
    my $n = syswrite($daemon, $request);
    last unless $n;    # the daemon closed: its answer says why
    substr($request, 0, $n) = '';
}

my $reply = '';
while (1) {
    my ($ready, $rest) = readable($daemon, $left);
    $left = $rest;
    blocked(${perlQuote(clientSays.noVerdictWithin(socket, timeoutMs))}) unless $ready;
    my $n = sysread($daemon, my $chunk, 65536);
    blocked($!{ECONNRESET} ? $closed_early : "reading pullguard's answer on $socket_path: $!") unless defined $n;
    last if $n == 0;
    $reply .= $chunk;
    blocked(${perlQuote(clientSays.answerTooLarge)}) if length($reply) > $max_answer;
}
blocked($closed_early) if $reply eq '';
my ($head, $body) = split /\\r\\n\\r\\n/, $reply, 2;
my ($status) = ($head // '') =~ /\\AHTTP\\/1\\.[01] (\\d{3}) /;
blocked("pullguard answered on $socket_path with something that is not HTTP") unless defined $status && defined $body;
$body =~ s/\\s+\\z//;
answer(${EXIT_ALLOWED}, $body) if $status == ${STATUS_ALLOWED};
answer(${EXIT_DENIED}, $body) if $status == ${STATUS_DENIED};
blocked(${perlMessage(clientSays.answeredStatus('\0', '\0'), '$status', `($body ne '' ? $body : ${perlQuote(clientSays.noReason)})`)});
`;
}
