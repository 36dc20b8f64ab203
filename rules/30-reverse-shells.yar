/*
    30-reverse-shells.yar: Linux reverse (and bind) shells written as
    scripts or one-liners: bash /dev/tcp redirections, netcat -e and the
    mkfifo/mknod pipe loops, telnet pipes, Python, Perl, socat, and the
    "sh <&n >&n 2>&n" descriptor dance used from PHP and Ruby.

    Each rule wants the two halves of the trick together: the network end
    (a host and port, a socket connect) AND a shell wired to it (sh -i,
    dup2 onto 0/1/2, exec:/bin/sh). Either half alone is everyday
    administration: bash's own binary knows "/dev/tcp", pty.py calls
    os.dup2, socat's manual shows exec: addresses.

    Cost: every string starts from a literal of 4+ bytes ("/dev/tcp/",
    "/bin/", "mkfifo", "dup2", "socat", "STDIN"); every gap is bounded
    and stops at a line end, because these are one-liners.

    Tuning: a remote-support or CTF training host that keeps such scripts
    on purpose should exclude that directory in vigild's config, not
    loosen these rules.

    Examples in comments write <HOST>, <PORT>, <N> and <SHELL> for the
    parts a real one-liner fills in, so that this file does not match its
    own rules (it is opened on watched filesystems too; tests/rules checks).
*/

rule Linux_Reverse_Shell_Bash_DevTcp
{
    meta:
        description = "Shell wired to a /dev/tcp or /dev/udp socket: an interactive shell redirected to /dev/tcp/<HOST>/<PORT>, stdin taken from it, or the exec <N><> variant"
        severity = "critical"
        date = "2026-11-22"
        reference = "https://www.gnu.org/software/bash/manual/html_node/Redirections.html"
        author = "vigild"

    strings:
        // <SHELL> -i >& /dev/tcp/<HOST>/<PORT>  (also &>, >, and -c wrappers)
        $interactive = /\b(ba|z|k|da)?sh[ \t]{1,4}-i[ \t]{0,4}(>&|&>|>)[ \t]{0,4}\/dev\/(tcp|udp)\/[A-Za-z0-9.-]{1,64}\/[0-9]{1,5}/
        // ... /dev/tcp/<HOST>/<PORT> 0>&1 : stdin taken from the socket.
        $stdin_dup = /\/dev\/(tcp|udp)\/[A-Za-z0-9.-]{1,64}\/[0-9]{1,5}[ \t]{0,4}(0>&1|0<&1|0<&2)/
        // exec <SHELL> 0</dev/tcp/<HOST>/<PORT> 1>&0 2>&0
        $stdin_redirect = /\b(ba|z|k|da)?sh[ \t]{1,4}(-i[ \t]{1,4})?0?<[ \t]{0,4}\/dev\/(tcp|udp)\/[A-Za-z0-9.-]{1,64}\/[0-9]{1,5}/
        // exec <N><>/dev/tcp/<HOST>/<PORT>; <SHELL> <&<N> >&<N> 2>&<N>
        $fd_open = /[0-9]{1,3}<>[ \t]{0,4}\/dev\/(tcp|udp)\/[A-Za-z0-9.-]{1,64}\/[0-9]{1,5}/
        $fd_shell = /\b(ba|z|k|da)?sh[ \t]{1,4}(-i[ \t]{1,4})?<&[ \t]{0,2}[0-9]{1,3}[ \t]{1,4}>&[ \t]{0,2}[0-9]{1,3}/

    condition:
        filesize < 5MB and
        ($interactive or $stdin_dup or $stdin_redirect or ($fd_open and $fd_shell))
}

rule Linux_Reverse_Shell_Netcat
{
    meta:
        description = "Netcat/telnet reverse shells: nc -e <SHELL>, ncat --exec, and mkfifo/mknod pipe loops that feed an interactive shell through nc"
        severity = "critical"
        date = "2026-11-22"
        reference = "https://man.openbsd.org/nc.1"
        author = "vigild"

    strings:
        // nc [opts] <HOST> <PORT> -e <SHELL>  and  nc -e <SHELL> <HOST> <PORT>
        $exec_opt = /\bn(c|cat|etcat)(\.traditional|\.openbsd)?([ \t][^|;&\n]{0,80})?[ \t](-e|-c|--exec|--sh-exec)[ \t]{1,4}['"]?((\/usr)?\/bin\/)?(ba|z|k|da)?sh\b/
        // mkfifo <FIFO>; cat <FIFO> | <SHELL> -i 2>&1 | nc <HOST> <PORT> > <FIFO>
        $fifo = /\bmkfifo[ \t]{1,4}[^ \t\n;|&]{1,64}[^\n]{0,120}\|[ \t]{0,4}(\/bin\/)?(ba|z|k|da)?sh[ \t]{1,4}-i[^\n]{0,60}\|[ \t]{0,4}(nc|ncat|netcat|telnet|openssl)\b/
        // mknod <FIFO> p; <SHELL> 0<<FIFO> | nc <HOST> <PORT> 1><FIFO>
        $mknod = /\bmknod[ \t]{1,4}[^ \t\n;|&]{1,64}[ \t]{1,4}p\b[^\n]{0,120}(\/bin\/)?(ba|z|k|da)?sh[^\n]{0,40}\|[ \t]{0,4}(nc|ncat|netcat|telnet)\b/
        // telnet <HOST> <PORT1> | <SHELL> | telnet <HOST> <PORT2>
        $telnet = /\btelnet[ \t]{1,4}[A-Za-z0-9.-]{1,64}[ \t]{1,4}[0-9]{1,5}[ \t]{0,4}\|[ \t]{0,4}(\/bin\/)?(ba)?sh[ \t]{0,4}\|[ \t]{0,4}telnet\b/

    condition:
        filesize < 5MB and any of them
}

rule Linux_Reverse_Shell_Python
{
    meta:
        description = "Python reverse shell: a connected socket duplicated onto stdin/stdout and a shell spawned on it"
        severity = "critical"
        date = "2026-11-22"
        reference = "https://docs.python.org/3/library/os.html#os.dup2"
        author = "vigild"

    strings:
        $connect = /\.connect\([ \t]{0,4}\([ \t]{0,4}['"]?[A-Za-z0-9.:-]{1,64}['"]?[ \t]{0,4},/
        // dup2 of the socket's fileno() onto 0, 1, 2: the socket becomes
        // the shell's stdin and stdout.
        $dup2_std = /\bdup2\([ \t]{0,4}[A-Za-z_][A-Za-z0-9_.]{0,40}\.fileno\(\)[ \t]{0,4},[ \t]{0,4}[012][ \t]{0,4}\)/
        $shell_list = /\[[ \t]{0,4}['"](\/bin\/)?(ba|z|k|da)?sh['"][ \t]{0,4},[ \t]{0,4}['"]-i['"]/
        $shell_pty = /\bpty\.spawn\([ \t]{0,4}['"](\/bin\/)?(ba|z|k|da)?sh['"]/
        // A bare or -i shell; a <SHELL> -c <command> list runs one command
        // and is what ordinary tools do.
        $shell_call = /\b(subprocess\.(call|Popen|run)|os\.system|os\.exec[lv]p?e?)\([ \t]{0,4}\[?[ \t]{0,4}['"]\/bin\/(ba|z|k|da)?sh['"][ \t]{0,4}(\]|\)|,[ \t]{0,4}['"](-i|(ba|z|k|da)?sh)['"])/

    condition:
        // Two dup2s at least: a shell needs the socket on stdin and stdout.
        filesize < 1MB and $connect and #dup2_std >= 2 and any of ($shell_*)
}

rule Linux_Reverse_Shell_Perl
{
    meta:
        description = "Perl reverse shell: STDIN/STDOUT reopened onto a connected socket, then a shell"
        severity = "critical"
        date = "2026-11-22"
        reference = "https://perldoc.perl.org/functions/open"
        author = "vigild"

    strings:
        // open of STDIN onto ">&" and the socket handle: it becomes stdin.
        $reopen = /\bopen[ \t]{0,4}\(?[ \t]{0,4}STDIN[ \t]{0,4},[ \t]{0,4}['"][<>]&/
        // IO::Socket variant: fdopen of STDIN on the socket object.
        $fdopen = /\bSTDIN->fdopen\([ \t]{0,4}\$[A-Za-z_]{1,20}/
        $connect_raw = /\bconnect[ \t]{0,4}\([ \t]{0,4}[A-Za-z_$]{1,20}[ \t]{0,4},[ \t]{0,4}sockaddr_in\(/
        $connect_io = "IO::Socket::INET"
        $shell_exec = /\bexec[ \t]{0,4}\(?[ \t]{0,4}['"](\/bin\/)?(ba|z|k|da)?sh\b/
        $shell_loop = /\bsystem[ \t]{0,4}\$_[ \t]{0,4}while[ \t]{0,4}</

    condition:
        filesize < 1MB and ($reopen or $fdopen) and any of ($connect_*) and any of ($shell_*)
}

rule Linux_Reverse_Shell_Socat
{
    meta:
        description = "socat joining a shell (exec:/system:) to a TCP, UDP or TLS connection or listener on one command line"
        severity = "critical"
        date = "2026-11-22"
        reference = "http://www.dest-unreach.org/socat/doc/socat.html"
        author = "vigild"

    strings:
        // Either order: socat exec:'<SHELL> -li',pty,... tcp:<HOST>:<PORT>
        //               socat tcp-connect:<HOST>:<PORT> exec:<SHELL>
        $shell_then_net = /\bsocat[ \t][^\n]{0,80}\b(exec|system):['"]?(\/bin\/)?(ba|z|k|da)?sh\b[^\n]{0,120}[ \t](tcp|tcp4|tcp6|udp|openssl|ssl)(-connect|-listen|-l)?:[A-Za-z0-9.\[\]:-]{1,80}/ nocase
        $net_then_shell = /\bsocat[ \t][^\n]{0,80}\b(tcp|tcp4|tcp6|udp|openssl|ssl)(-connect|-listen|-l)?:[^ \t\n]{1,120}[ \t]{1,4}['"]?(exec|system):['"]?(\/bin\/)?(ba|z|k|da)?sh\b/ nocase

    condition:
        filesize < 5MB and any of them
}

rule Linux_Reverse_Shell_Fd_Redirect
{
    meta:
        description = "Script-language socket handed to a shell by descriptor: fsockopen/TCPSocket then sh -i <&3 >&3 2>&3 (PHP, Ruby and similar one-liners)"
        severity = "critical"
        date = "2026-11-22"
        reference = "https://www.php.net/manual/en/function.fsockopen.php"
        author = "vigild"

    strings:
        $sock_php = /\bfsockopen[ \t]{0,4}\(/ nocase
        $sock_ruby = "TCPSocket.open(" nocase
        $sock_ruby_new = "TCPSocket.new(" nocase
        $sock_lua = "socket.tcp()"
        // <SHELL> -i <&<N> >&<N> 2>&<N>, also printf-style with %d
        $fd_dance = /\/bin\/(ba|z|k|da)?sh[ \t]{1,4}(-i[ \t]{1,4})?<&[ \t]{0,2}([0-9]{1,3}|%d)[ \t]{1,4}>&[ \t]{0,2}([0-9]{1,3}|%d)[ \t]{1,4}2>&[ \t]{0,2}([0-9]{1,3}|%d)/

    condition:
        filesize < 1MB and $fd_dance and any of ($sock_*)
}
