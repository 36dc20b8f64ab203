/*
    40-droppers.yar: download-and-execute droppers in shell scripts.

    The first stage of most Linux intrusions (cryptojacking, IoT botnets,
    post-exploitation kits) is a few lines of shell that fetch a payload
    and run it. What separates them from the "curl https://... | sh"
    installers that real projects document is where they fetch from and
    where they put it:

      - a bare IP address as the download host, piped into a shell;
      - a payload written to /tmp, /var/tmp or /dev/shm, made executable
        and run in the same breath;
      - base64 text decoded straight into a shell;
      - BusyBox loader chains (cd into /tmp, else /var/run, else ...;
        BusyBox's wget, tftp or ftpget applet; one binary per CPU
        architecture).

    A plain "curl -fsSL https://get.example.org | sh" is NOT matched: it is
    in READMEs everywhere, and a name-based host is not evidence.

    Cost: atoms are "curl", "wget", "chmod", "base64", "busybox", "tftp";
    gaps are bounded and stay on one line.

    Tuning: a provisioning system that really downloads from bare IPs into
    /tmp should be fixed to use a named host and a private directory; if
    it cannot, exclude its script directory rather than editing a rule.

    Examples in comments write <IP>, <FILE> and <SHELL> for the parts a
    real dropper fills in, so that this file does not match its own rules
    (it is opened on watched filesystems too; tests/rules checks).
*/

rule Linux_Dropper_Download_Pipe_Shell
{
    meta:
        description = "curl/wget download from a bare IP address piped straight into a shell"
        severity = "high"
        date = "2026-11-22"
        reference = "https://attack.mitre.org/techniques/T1105/"
        author = "vigild"

    strings:
        // curl -fsSL http://<IP>:<PORT>/<FILE> | <SHELL>
        // wget -qO- http://<IP>/<FILE> | <SHELL> -s
        $pipe_ip = /\b(curl|wget)[ \t][^\n|;]{0,100}(https?|ftp):\/\/[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(:[0-9]{1,5})?(\/[^ \t\n|;]{0,100})?['"]?[^\n|;]{0,60}\|[ \t]{0,4}(sudo[ \t]{1,4})?(\/usr)?(\/bin\/)?(ba|z|k|da)?sh\b/
        // Host given without scheme: curl <IP>/<FILE>|<SHELL>
        $pipe_bare = /\b(curl|wget)[ \t][^\n|;]{0,100}[ \t]['"]?[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(:[0-9]{1,5})?\/[^ \t\n|;]{0,100}['"]?[^\n|;]{0,60}\|[ \t]{0,4}(sudo[ \t]{1,4})?(\/usr)?(\/bin\/)?(ba|z|k|da)?sh\b/

    condition:
        filesize < 5MB and any of them
}

rule Linux_Dropper_Tmp_Chmod_Exec
{
    meta:
        description = "Shell script that downloads into /tmp, /var/tmp or /dev/shm, makes the file executable and runs it"
        severity = "high"
        date = "2026-11-22"
        reference = "https://attack.mitre.org/techniques/T1105/"
        author = "vigild"

    strings:
        $fetch_wget = /\bwget[ \t]/
        $fetch_curl = /\bcurl[ \t]/
        $fetch_tftp = /\btftp[ \t]/
        $fetch_ftpget = /\bftpget[ \t]/

        // chmod +x /dev/shm/<FILE>; /dev/shm/<FILE> : made executable and
        // run from a world-writable directory, by absolute path.
        $run_abs = /\bchmod[ \t]{1,4}(\+x|[0-7]{3,4}|[ugoa]{1,3}\+[rwx]{1,3})[ \t]{1,4}['"]?(\/tmp\/|\/var\/tmp\/|\/dev\/shm\/)[A-Za-z0-9._-]{1,64}['"]?[ \t]{0,4}(;|&&|\n)[ \t]{0,4}(nohup[ \t]{1,4}|setsid[ \t]{1,4}|exec[ \t]{1,4}|(ba)?sh[ \t]{1,4})?['"]?(\/tmp\/|\/var\/tmp\/|\/dev\/shm\/)[A-Za-z0-9._-]{1,64}/
        // chmod 777 <FILE>; ./<FILE> : the same from the current directory.
        // Builds do this too (chmod +x on configure, then run it), so this
        // form also needs a cd into the temporary directory and a payload
        // sent to the background, which builds do not do.
        $run_rel = /\bchmod[ \t]{1,4}(\+x|[0-7]{3,4}|[ugoa]{1,3}\+[rwx]{1,3})[ \t]{1,4}['"]?(\.\/)?[A-Za-z0-9._-]{1,64}['"]?[ \t]{0,4}(;|&&|\n)[ \t]{0,4}(nohup[ \t]{1,4}|setsid[ \t]{1,4}|exec[ \t]{1,4}|(ba)?sh[ \t]{1,4})?\.\/[A-Za-z0-9._-]{1,64}/
        $cd_tmp = /\bcd[ \t]{1,4}['"]?(\/tmp|\/var\/tmp|\/dev\/shm)\b/
        $bg_nohup = /\bnohup[ \t]{1,4}(\.\/|\/tmp\/|\/var\/tmp\/|\/dev\/shm\/)/
        $bg_amp = /\.\/[A-Za-z0-9._-]{1,64}[^\n;|]{0,80}&[ \t]{0,4}(\n|;)/

    condition:
        filesize < 1MB and any of ($fetch_*) and
        ($run_abs or ($run_rel and $cd_tmp and any of ($bg_*)))
}

rule Linux_Dropper_Base64_Pipe_Shell
{
    meta:
        description = "Shell one-liner that decodes a long base64 blob straight into a shell: echo <base64> | base64 -d | bash"
        severity = "high"
        date = "2026-11-22"
        reference = "https://attack.mitre.org/techniques/T1027/"
        author = "vigild"

    strings:
        // The blob itself is not matched (no atom in [A-Za-z0-9+/]), only
        // its 60-character head right after echo/printf.
        $blob = /\b(echo|printf)[ \t]{1,4}(-[ne]{1,2}[ \t]{1,4})?['"]?[A-Za-z0-9+\/]{60}/
        $decode_pipe = /\|[ \t]{0,4}base64[ \t]{1,4}(-d|--decode|-di|-D)[ \t]{0,4}\|[ \t]{0,4}(sudo[ \t]{1,4})?(\/usr)?(\/bin\/)?(ba|z|k|da)?sh\b/

    condition:
        filesize < 1MB and $blob and $decode_pipe
}

rule Linux_Dropper_Busybox_Loader
{
    meta:
        description = "IoT botnet loader script: cd /tmp || cd /var/run chains, busybox wget/tftp/ftpget, one payload per CPU architecture"
        severity = "critical"
        date = "2026-11-22"
        reference = "https://github.com/jgamblin/Mirai-Source-Code"
        author = "vigild"

    strings:
        // cd into /tmp, else /var/run, else /mnt, else /root, else /
        $cd_chain = /\bcd[ \t]{1,4}\/(tmp|var\/run|mnt|root|dev\/shm|var\/tmp)[ \t]{0,4}\|\|[ \t]{0,4}cd[ \t]{1,4}\/(tmp|var\/run|mnt|root|dev\/shm|var\/tmp|var|etc)/
        $bb_wget = /busybox[ \t]{1,4}wget[ \t]/
        $bb_tftp = /busybox[ \t]{1,4}tftp[ \t]/
        $bb_ftpget = /busybox[ \t]{1,4}ftpget[ \t]/
        $tftp_get = /\btftp[ \t]{1,4}(-g[ \t]{1,4}-r|[0-9.]{7,15}[ \t]{1,4}-c[ \t]{1,4}get)[ \t]/
        $mode_777 = /\bchmod[ \t]{1,4}(777|\+x)[ \t]/

        // Payload names by architecture, as fetched: http://<IP>/<NAME>.mips
        $arch_mips = /[\/ .](mips|mpsl|mipsel)[ \t;\n]/
        $arch_arm = /[\/ .](arm|arm5|arm6|arm7|armv4l|armv5l|armv6l|armv7l)[ \t;\n]/
        $arch_x86 = /[\/ .](x86|x86_64|i586|i686|i486)[ \t;\n]/
        $arch_other = /[\/ .](ppc|powerpc|m68k|sh4|spc|sparc|arc)[ \t;\n]/

    condition:
        filesize < 512KB and
        (
            ($cd_chain and any of ($bb_*, $tftp_get)) or
            (any of ($bb_*, $tftp_get) and $mode_777 and 3 of ($arch_*)) or
            ($cd_chain and $mode_777 and 3 of ($arch_*))
        )
}
