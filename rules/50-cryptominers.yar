/*
    50-cryptominers.yar: cryptominers dropped on servers (cryptojacking).

    Covers the three artefacts a miner leaves on disk:
      - XMRig's JSON configuration (config.json: "pools", "donate-level",
        "randomx", ...), which droppers write next to the binary;
      - the XMRig binary itself, by strings its build keeps in clear
        (donation host, option names, algorithm names) when it is not
        packed;
      - any script or config that points a miner at a stratum pool with a
        wallet address as the user name.

    Tuning: on a server nobody mines on purpose; a host that does (a lab,
    a pool operator) should exclude its miner directory, not edit these.
    The "N of" thresholds in XMRig_Binary_Strings are the knob for forks
    that rename themselves.

    Wallet formats recognised after a user option: Monero (95 chars from
    4 or 8), Bitcoin base58 (1/3...) and bech32 (bc1...), Ethereum (0x +
    40 hex).

    Cost: literal atoms throughout ("stratum+", "donate-level", "xmrig",
    quoted JSON keys); the wallet patterns are only tried next to a user
    option literal, never on their own, because a bare base58 class has no
    atom and would make YARA test every byte.
*/

rule XMRig_Config_JSON
{
    meta:
        description = "XMRig miner configuration file (JSON with pools, donate-level and CPU/RandomX settings)"
        severity = "high"
        date = "2026-11-22"
        reference = "https://xmrig.com/docs/miner/config"
        author = "vigild"

    strings:
        $pools = "\"pools\""
        $donate = "\"donate-level\""

        $key_randomx = "\"randomx\""
        $key_algo = "\"algo\""
        $key_url = "\"url\""
        $key_cpu = "\"cpu\""
        $key_huge = "\"huge-pages\""
        $key_nicehash = "\"nicehash\""
        $key_keepalive = "\"keepalive\""
        $key_rig = "\"rig-id\""
        $key_coin = "\"coin\""

    condition:
        filesize < 512KB and $pools and $donate and 3 of ($key_*)
}

rule XMRig_Binary_Strings
{
    meta:
        description = "XMRig (or a fork) as an unpacked ELF: donation host, command-line options and algorithm names in clear"
        severity = "high"
        date = "2026-11-22"
        reference = "https://github.com/xmrig/xmrig"
        author = "vigild"

    strings:
        $name = "xmrig" nocase

        $m_donate_host = ".xmrig.com"
        $m_donate_opt = "--donate-level"
        $m_donate_key = "donate-level"
        $m_randomx = "randomx" nocase
        $m_cn = "cryptonight" nocase
        $m_rx0 = "rx/0"
        $m_stratum = "stratum+tcp://"
        $m_stratum_ssl = "stratum+ssl://"
        $m_nicehash = "nicehash" nocase
        $m_hugepages = "huge pages" nocase

    condition:
        uint32(0) == 0x464C457F and filesize < 40MB and
        (($name and 3 of ($m_*)) or 5 of ($m_*))
}

rule Cryptominer_Stratum_Wallet
{
    meta:
        description = "Miner pointed at a stratum pool (stratum+tcp/ssl/tls URL) with a cryptocurrency wallet address as the user"
        severity = "high"
        date = "2026-11-22"
        reference = "https://en.bitcoin.it/wiki/Stratum_mining_protocol"
        author = "vigild"

    strings:
        $url = /stratum\+(tcp|ssl|tls|udp):\/\/[A-Za-z0-9.-]{1,100}:[0-9]{2,5}/ nocase

        // -u WALLET, --user=WALLET, "user": "WALLET" (an optional
        // ".worker" or "+diff" suffix after the wallet does not matter).
        $wallet_xmr = /(-u|-O|--user|--userpass|"user"[ \t]{0,4}:)[ \t=]{0,4}["']?[48][0-9AB][1-9A-HJ-NP-Za-km-z]{93}/
        $wallet_btc = /(-u|-O|--user|--userpass|"user"[ \t]{0,4}:)[ \t=]{0,4}["']?([13][1-9A-HJ-NP-Za-km-z]{25,34}|bc1[02-9ac-hj-np-z]{38,58})\b/
        $wallet_eth = /(-u|-O|--user|--userpass|"user"[ \t]{0,4}:)[ \t=]{0,4}["']?0x[0-9a-fA-F]{40}\b/

    condition:
        filesize < 5MB and $url and any of ($wallet_*)
}
