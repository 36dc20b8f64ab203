#!/usr/bin/perl
# Nagios-style check: talk to a service, log, run a local helper.
use strict;
use warnings;
use IO::Socket::INET;

open(STDOUT, '>>', '/var/log/check.log') or die;
open(STDERR, '>&', \*STDOUT) or die;
my $sock = IO::Socket::INET->new(PeerAddr => 'db.example.com', PeerPort => 5432, Timeout => 3)
    or exit 2;
print $sock "PING\n";
my $answer = <$sock>;
system('/bin/sh', '-c', 'logger check done');
exit($answer =~ /PONG/ ? 0 : 1);
