/*
    60-iot-botnets.yar: Mirai- and Gafgyt (BASHLITE/Qbot)-style IoT botnet
    ELF binaries.

    These bots are built for MIPS, ARM, x86, PowerPC, SuperH... and land on
    Linux servers too, through the same telnet/SSH brute force and the
    loader scripts matched in 40-droppers.yar. Unpacked, they carry:

      - the telnet credential table they brute-force with
        (xc3511, vizxv, 7ujMko0admin, ...);
      - the BusyBox probe with a random upper-case tag that the scanner
        sends to tell a real shell from a honeypot (/bin/busybox MIRAI,
        "applet not found"), the watchdog paths it disables, the "killer"
        strings it uses to evict competitors, attack method names and
        flood payloads (TSource Engine Query, the anti-DDoS vendor
        headers it fingerprints);
      - in Gafgyt, clear-text C2 commands (GETLOCALIP, KILLATTK,
        LOLNOGTFO...).

    Mirai's source hides its string table and credentials with a one-byte
    XOR (0x22, from the key 0xDEADBEEF); forks often leave them in clear.
    Strings that benign programs also contain in clear ("applet not
    found" in BusyBox, "ncorrect" in login) are matched in their XOR-0x22
    form only. Every rule requires the ELF magic at offset 0.

    Not covered: UPX-packed samples (the strings are compressed). The
    hash list is the layer for those.

    Tuning: the "N of" thresholds are the knobs. Lowering them below what
    is written here lets BusyBox builds and watchdog daemons in.
*/

rule Linux_IoT_Mirai
{
    meta:
        description = "Mirai-family IoT bot (ELF): BusyBox tag probe, watchdog and killer strings, attack payloads, in clear or XOR-0x22 encoded"
        severity = "critical"
        date = "2026-11-22"
        reference = "https://github.com/jgamblin/Mirai-Source-Code"
        author = "vigild"

    strings:
        // "/bin/busybox MIRAI" and its forks' tags (ECCHI, SORA, OWARI...),
        // NUL- or CRLF-terminated as the scanner sends it.
        $tag_clear = /\/bin\/busybox[ \t]{1,4}[A-Z0-9]{4,12}(\x00|\r\n|;)/
        $tag_xor = "/bin/busybox " xor(0x22)
        $applet_xor = "applet not found" xor(0x22)
        $ncorrect_xor = "ncorrect" xor(0x22)
        $watchdog_misc = "/dev/misc/watchdog"
        $watchdog_misc_xor = "/dev/misc/watchdog" xor(0x22)
        $watchdog_xor = "/dev/watchdog" xor(0x22)
        $procnet_xor = "/proc/net/tcp" xor(0x22)
        // Exactly two forms each (clear and 0x22), not an xor range: a
        // range adds 35 patterns per string to every scan of every file.
        $anime = ".anime"
        $anime_xor = ".anime" xor(0x22)
        $report = "REPORT %s:%s"
        $report_xor = "REPORT %s:%s" xor(0x22)
        $vse = "TSource Engine Query"
        $vse_xor = "TSource Engine Query" xor(0x22)
        $dosarrest = "server: dosarrest"
        $dosarrest_xor = "server: dosarrest" xor(0x22)
        $cf_nginx = "server: cloudflare-nginx"
        $cf_nginx_xor = "server: cloudflare-nginx" xor(0x22)

    condition:
        uint32(0) == 0x464C457F and filesize < 5MB and 3 of them
}

rule Linux_IoT_Gafgyt
{
    meta:
        description = "Gafgyt/BASHLITE/Qbot-family IoT bot (ELF): clear-text C2 commands, flood names and the gayfgt BusyBox probe"
        severity = "critical"
        date = "2026-11-22"
        reference = "https://attack.mitre.org/software/S0385/"
        author = "vigild"

    strings:
        $cmd_localip = "GETLOCALIP"
        $cmd_killattk = "KILLATTK"
        $cmd_lolnogtfo = "LOLNOGTFO"
        $cmd_scanner = /SCANNER[ \t](ON|OFF)/
        $cmd_pong = "PONG!"
        // echo -e '\147\141\171\146\147\164' prints "gayfgt": the probe
        // that tells a real BusyBox shell from a honeypot.
        $probe_octal = "\\147\\141\\171\\146\\147\\164"
        $probe_word = "gayfgt"
        $flood_junk = "JUNK Flooding"
        $flood_hold = "HOLD Flooding"
        $flood_udp = "UDP Flooding"
        $flood_tcp = "TCP Flooding"
        $flood_http = "HTTPFLOOD"
        $report = /REPORT[ \t]%s:%s:%s/

    condition:
        uint32(0) == 0x464C457F and filesize < 5MB and 3 of them
}

rule Linux_IoT_Botnet_Credential_Table
{
    meta:
        description = "ELF carrying an IoT telnet brute-force credential table (Mirai defaults such as xc3511, vizxv, 7ujMko0admin), in clear or XOR-0x22 encoded"
        severity = "critical"
        date = "2026-11-22"
        reference = "https://github.com/jgamblin/Mirai-Source-Code"
        author = "vigild"

    strings:
        // Factory passwords of DVRs, IP cameras and routers that no
        // legitimate program ships as a list.
        $c_xc3511 = "xc3511"
        $c_vizxv = "vizxv"
        $c_xmhdipc = "xmhdipc"
        $c_juantech = "juantech"
        $c_7ujmko0admin = "7ujMko0admin"
        $c_7ujmko0vizxv = "7ujMko0vizxv"
        $c_zte521 = "Zte521"
        $c_hi3518 = "hi3518"
        $c_jvbzd = "jvbzd"
        $c_klv123 = "klv123"
        $c_meinsm = "meinsm"
        $c_smcadmin = "smcadmin"
        $c_zlxx = "zlxx."

        $x_xc3511 = "xc3511" xor(0x22)
        $x_vizxv = "vizxv" xor(0x22)
        $x_xmhdipc = "xmhdipc" xor(0x22)
        $x_juantech = "juantech" xor(0x22)
        $x_7ujmko0admin = "7ujMko0admin" xor(0x22)
        $x_7ujmko0vizxv = "7ujMko0vizxv" xor(0x22)
        $x_zte521 = "Zte521" xor(0x22)
        $x_hi3518 = "hi3518" xor(0x22)
        $x_jvbzd = "jvbzd" xor(0x22)
        $x_klv123 = "klv123" xor(0x22)
        $x_meinsm = "meinsm" xor(0x22)
        $x_smcadmin = "smcadmin" xor(0x22)
        $x_zlxx = "zlxx." xor(0x22)

    condition:
        uint32(0) == 0x464C457F and filesize < 5MB and (4 of ($c_*) or 4 of ($x_*))
}
