/*
    70-ransom-notes.yar: ransom notes (text and HTML, ASCII or UTF-16).

    A note appearing on a file server is often the first thing an admin
    can see of an encryption run that started elsewhere (an SMB or NFS
    client writes the note into every directory it touches), so blocking
    and alerting on the note's creation is worth a rule of its own.

    A note is recognised by three things together, all addressed to the
    reader:
      1. a statement that *your* files / network / data have been
         encrypted or locked;
      2. a concrete contact or payment channel: a Tor .onion address, a
         wallet address next to its coin name, an anonymous mailbox, a
         Tox ID;
      3. at least two victim-handling lines: a personal/unique ID, a
         decryption key or tool, "do not rename / do not try to decrypt",
         a free test decryption, a deadline, the coin to pay in.

    What is NOT a note: a blog post, an advisory or an incident-response
    page about ransomware. They quote the same sentences, name bitcoin and
    Tor, and even list onion and wallet addresses as indicators. They also
    speak *about* the note in the third person, so two or more of the
    analysis words below ("ransom note", "threat actor", "indicators of
    compromise", ...) veto the match. Real notes do not talk that way.

    Cost: atoms are literal English phrases, ".onion", "bitcoin"...; the
    only regexes over classes (wallets, onion names) are anchored on a
    literal. The 256 KB limit keeps big documents out.

    Tuning: add a language by adding its phrase to $enc_* (and its
    victim-handling phrases); do not drop the veto.
*/

rule Ransom_Note_Generic
{
    meta:
        description = "Ransom note: your files were encrypted + a Tor/wallet/anonymous contact + victim ID, key or instructions; not a document about ransomware"
        severity = "critical"
        date = "2026-11-22"
        reference = "https://attack.mitre.org/techniques/T1486/"
        author = "vigild"

    strings:
        // 1. Encryption, addressed to the reader.
        $enc_files = /your[ \t]{1,4}(important[ \t]{1,4}|personal[ \t]{1,4}|company[ \t]{1,4}|corporate[ \t]{1,4})?(files|documents|data|network|servers|databases|computers|photos)[ \t]{1,4}(have[ \t]{1,4}been|has[ \t]{1,4}been|are|were|was)[ \t]{1,4}(stolen[ \t]{1,4}and[ \t]{1,4})?(encrypted|locked)/ nocase ascii wide
        $enc_all = /all[ \t]{1,4}(of[ \t]{1,4})?your[ \t]{1,4}(files|documents|data)[ \t]{1,4}(have[ \t]{1,4}been|are|were)[ \t]{1,4}(stolen[ \t]{1,4}and[ \t]{1,4})?(encrypted|locked)/ nocase ascii wide
        $enc_we = /we[ \t]{1,4}(have[ \t]{1,4})?encrypted[ \t]{1,4}(all[ \t]{1,4})?your[ \t]{1,4}(files|data|network|servers)/ nocase ascii wide

        // 2. A concrete channel.
        $ch_onion = /[a-z2-7]{16}([a-z2-7]{40})?\.onion/ ascii wide
        $ch_wallet_btc = /(bitcoin|btc|wallet)[^\n]{0,60}\b(bc1[02-9ac-hj-np-z]{38,58}|[13][1-9A-HJ-NP-Za-km-z]{25,34})\b/ nocase ascii wide
        $ch_wallet_xmr = /(monero|xmr|wallet)[^\n]{0,60}\b[48][0-9AB][1-9A-HJ-NP-Za-km-z]{93}\b/ nocase ascii wide
        // Anonymous mailboxes notes give as the contact.
        $ch_mail_protonmail_com = "@protonmail.com" nocase ascii wide
        $ch_mail_protonmail_ch = "@protonmail.ch" nocase ascii wide
        $ch_mail_proton_me = "@proton.me" nocase ascii wide
        $ch_mail_tutanota_com = "@tutanota.com" nocase ascii wide
        $ch_mail_tutanota_de = "@tutanota.de" nocase ascii wide
        $ch_mail_tuta_io = "@tuta.io" nocase ascii wide
        $ch_mail_onionmail_org = "@onionmail.org" nocase ascii wide
        $ch_mail_cock_li = "@cock.li" nocase ascii wide
        $ch_mail_airmail_cc = "@airmail.cc" nocase ascii wide
        $ch_mail_mailfence_com = "@mailfence.com" nocase ascii wide
        $ch_mail_keemail_me = "@keemail.me" nocase ascii wide
        $ch_mail_firemail_cc = "@firemail.cc" nocase ascii wide
        $ch_tox = /tox[ \t]{0,2}(chat[ \t]{0,2})?id[ \t]{0,4}:?[ \t]{0,4}[0-9A-F]{76}/ nocase ascii wide

        // 3. Handling the victim.
        // The victim's ID, counted once however it is spelled.
        $id_personal = "your personal id" nocase ascii wide
        $id_unique = "your unique id" nocase ascii wide
        $id_your = "your id:" nocase ascii wide
        $id_key = "personal key" nocase ascii wide
        $id_victim = "victim id" nocase ascii wide
        $id_decryption = "decryption id" nocase ascii wide
        $v_key = "decryption key" nocase ascii wide
        $v_tool = /decrypt(or|ion[ \t]{1,4}(tool|software|program))/ nocase ascii wide
        // The "do not ..." lines count once together, as one handling line.
        $dont_rename = "do not rename" nocase ascii wide
        $dont_modify = "do not modify" nocase ascii wide
        $dont_decrypt = "do not try to decrypt" nocase ascii wide
        $dont_police = "do not contact the police" nocase ascii wide
        $dont_off = "do not turn off" nocase ascii wide
        $v_free = /(free|test)[ \t]{1,4}decrypt(ion)?/ nocase ascii wide
        $v_deadline = /(within|after)[ \t]{1,4}[0-9]{1,3}[ \t]{1,4}(hours|days)/ nocase ascii wide
        $v_double = /price[ \t]{1,4}(will[ \t]{1,4})?(be[ \t]{1,4})?doubled?/ nocase ascii wide
        $v_tor = "Tor Browser" nocase ascii wide
        $v_coin = /\b(bitcoin|monero|btc|xmr)\b/ nocase ascii wide

        // Third-person analysis vocabulary: a document about ransomware.
        // ASCII only: such documents are UTF-8 text or HTML, and every wide
        // nocase string costs a scan of its own.
        $doc_note = "ransom note" nocase ascii
        $doc_actor = "threat actor" nocase ascii
        $doc_ioc = "indicators of compromise" nocase ascii
        $doc_iocs = "IOCs" ascii
        $doc_family = "ransomware family" nocase ascii
        $doc_attack = "ATT&CK" ascii
        $doc_researchers = "researchers" nocase ascii
        $doc_attackers = "attackers" nocase ascii
        $doc_operators = "ransomware operators" nocase ascii
        $doc_victims = "victims" nocase ascii

    condition:
        filesize < 256KB and
        any of ($enc_*) and any of ($ch_*) and
        (2 of ($v_*) or
         (any of ($v_*) and (any of ($id_*) or any of ($dont_*))) or
         (any of ($id_*) and any of ($dont_*))) and
        not 2 of ($doc_*)
}
