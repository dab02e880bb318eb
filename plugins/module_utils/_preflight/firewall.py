# Copyright (c) nixie.metal contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Would this machine's firewall drop what the machines send to the netboot server?

The rulesets are read as they are (``nft -j list ruleset``, which shows iptables-nft rules too,
and ``iptables-legacy-save`` for the legacy tables) and turned into one small model: chains of
rules, each rule a list of conditions and a verdict. A probe, an incoming packet on the serving
interface (UDP 67, 4011, 69; TCP to the HTTP port; a new connection), is walked through every
input base chain. A condition the model cannot decide (a source address, a named set, a rate
limit) makes a drop after it a "may drop", which is reported too: a person can judge it, the
preflight cannot.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import shlex
import shutil
import subprocess
from collections.abc import Container, Mapping, Sequence
from typing import Any

from ansible_collections.nixie.metal.plugins.module_utils._preflight import report

ACCEPT, DROP, CONTINUE = "accept", "drop", "continue"
PROTOCOL_NUMBERS = {"udp": 17, "tcp": 6}


@dataclasses.dataclass(frozen=True)
class Probe:
    """A packet a machine sends to the server; ``pkttype`` is how it reaches this host."""

    interface: str
    protocol: str
    port: int
    pkttype: str = "host"

    def __str__(self) -> str:
        return "%s %d" % (self.protocol.upper(), self.port)


@dataclasses.dataclass(frozen=True)
class Cond:
    """``kind`` is iif, l4proto, dport, ctstate, nfproto, pkttype or unknown; ``values`` what it matches."""

    kind: str
    values: tuple = ()
    negate: bool = False

    def decide(self, probe: Probe) -> bool | None:
        """True, False, or None when this condition depends on what the probe does not fix."""
        if self.kind == "unknown":
            return None
        if self.kind == "iif":
            hit = any(fnmatch.fnmatchcase(probe.interface, value.replace("+", "*")) for value in self.values)
        elif self.kind == "l4proto":
            hit = any(str(value) in (probe.protocol, str(PROTOCOL_NUMBERS[probe.protocol])) for value in self.values)
        elif self.kind == "dport":
            hit = any(low <= probe.port <= high for low, high in self.values)
        elif self.kind == "ctstate":
            hit = "new" in {str(value).lower() for value in self.values}
        elif self.kind == "nfproto":
            hit = "ipv4" in self.values
        elif self.kind == "pkttype":
            hit = probe.pkttype in self.values
        else:
            return None
        return hit != self.negate

    def __str__(self) -> str:
        if self.kind == "unknown":
            return self.values[0] if self.values else "?"
        values = ",".join("%d-%d" % v if isinstance(v, tuple) and v[0] != v[1] else str(v[0] if isinstance(v, tuple) else v)
                          for v in self.values)
        return "%s %s%s" % (self.kind, "!= " if self.negate else "", values)


@dataclasses.dataclass(frozen=True)
class Rule:
    conds: tuple
    verdict: str | None  # accept, drop (reject too), jump, goto, return, or None (no verdict)
    target: str | None = None
    where: str = ""

    def __str__(self) -> str:
        verdict = "%s %s" % (self.verdict, self.target) if self.target else (self.verdict or "")
        return "%s: %s" % (self.where, " ".join([str(c) for c in self.conds] + [verdict]).strip())


@dataclasses.dataclass
class Chain:
    name: str
    rules: list
    base: bool = False
    policy: str = ACCEPT
    where: str = ""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """``verdict`` accept, drop or continue; ``rule`` what decided it; ``maybe`` whether an undecided condition was on the way."""

    verdict: str
    rule: str = ""
    maybe: bool = False


# -- nftables JSON -----------------------------------------------------------------------

def _values(right: Any) -> list:
    if isinstance(right, dict) and "set" in right:
        return list(right["set"])
    if isinstance(right, list):
        return right
    return [right]


def _ports(right: Any) -> list[tuple[int, int]] | None:
    ports = []
    for item in _values(right):
        if isinstance(item, dict) and "range" in item:
            ports.append((int(item["range"][0]), int(item["range"][1])))
        elif isinstance(item, int):
            ports.append((item, item))
        elif isinstance(item, str) and item.isdigit():
            ports.append((int(item), int(item)))
        else:
            return None  # a named set (@name) or a service name: undecidable here
    return ports


def _nft_match(match: Mapping[str, Any]) -> list[Cond]:
    """The conditions one nft ``match`` expression stands for."""
    left, right, negate = match.get("left"), match.get("right"), match.get("op") == "!="
    text = json.dumps(match, sort_keys=True)
    if isinstance(right, str) and right.startswith("@"):
        return [Cond("unknown", ("set %s" % right,))]
    if isinstance(left, dict) and "meta" in left:
        key = left["meta"].get("key")
        if key in ("iifname", "iif"):
            return [Cond("iif", tuple(str(v) for v in _values(right)), negate)]
        if key == "l4proto":
            return [Cond("l4proto", tuple(_values(right)), negate)]
        if key == "nfproto":
            return [Cond("nfproto", tuple(_values(right)), negate)]
        if key == "pkttype":
            return [Cond("pkttype", tuple(_values(right)), negate)]
    if isinstance(left, dict) and "payload" in left:
        payload = left["payload"]
        if payload.get("protocol") == "ip" and payload.get("field") == "protocol":
            return [Cond("l4proto", tuple(_values(right)), negate)]
        if payload.get("field") == "dport" and payload.get("protocol") in ("udp", "tcp", "th"):
            ports = _ports(right)
            if ports is None:
                return [Cond("unknown", (text,))]
            conds = [] if payload["protocol"] == "th" else [Cond("l4proto", (payload["protocol"],))]
            return conds + [Cond("dport", tuple(ports), negate)]
        if payload.get("protocol") in ("ip6", "icmpv6"):
            return [Cond("nfproto", ("ipv6",))]
    if isinstance(left, dict) and "ct" in left and left["ct"].get("key") == "state":
        return [Cond("ctstate", tuple(_values(right)), negate)]
    return [Cond("unknown", (text,))]


def _nft_rule(rule: Mapping[str, Any], where: str) -> Rule:
    conds, verdict, target = [], None, None
    for expr in rule.get("expr", []):
        if "match" in expr:
            conds.extend(_nft_match(expr["match"]))
        elif "accept" in expr:
            verdict = ACCEPT
        elif "drop" in expr or "reject" in expr:
            verdict = DROP
        elif "jump" in expr or "goto" in expr:
            kind = "jump" if "jump" in expr else "goto"
            verdict, target = kind, expr[kind].get("target")
        elif "return" in expr:
            verdict = "return"
        elif "xt" in expr:
            xt = expr["xt"]
            if xt.get("type") == "target" and xt.get("name") in ("REJECT", "DROP"):
                verdict = DROP
            elif xt.get("type") == "match":
                conds.append(Cond("unknown", ("xt %s" % xt.get("name"),)))
        elif "limit" in expr or "quota" in expr:
            conds.append(Cond("unknown", (json.dumps(expr, sort_keys=True),)))
    return Rule(tuple(conds), verdict, target, "%s (handle %s)" % (where, rule.get("handle", "?")))


def chains_from_nft(document: Mapping[str, Any], interface: str) -> dict[str, Chain]:
    """``{key: Chain}`` of the ip/inet tables, and netdev ingress chains on ``interface``, from ``nft -j list ruleset``."""
    chains = {}
    items = document.get("nftables", []) if isinstance(document, dict) else []
    for item in items:
        chain = item.get("chain")
        if not chain or chain.get("family") not in ("ip", "inet", "netdev"):
            continue
        key = ("nft", chain["family"], chain["table"], chain["name"])
        devices = chain.get("dev", [])
        devices = [devices] if isinstance(devices, str) else devices
        base = (chain.get("hook") == "input" and chain["family"] in ("ip", "inet")) or (
            chain.get("hook") == "ingress" and chain["family"] == "netdev" and interface in devices)
        chains[key] = Chain(chain["name"], [], base, chain.get("policy", ACCEPT),
                            "%s %s %s" % (chain["family"], chain["table"], chain["name"]))
    for item in items:
        rule = item.get("rule")
        if not rule:
            continue
        key = ("nft", rule.get("family"), rule.get("table"), rule.get("chain"))
        if key in chains:
            chains[key].rules.append(_nft_rule(rule, chains[key].where))
    # Targets of jumps are named inside the rule's own table.
    for key, chain in chains.items():
        chain.rules = [dataclasses.replace(rule, target=str((key[0], key[1], key[2], rule.target))) if rule.target else rule
                       for rule in chain.rules]
    return {str(key): chain for key, chain in chains.items()}


# -- iptables-save (legacy) -----------------------------------------------------------------

_IPT_TERMINAL = {"ACCEPT": ACCEPT, "DROP": DROP, "REJECT": DROP, "RETURN": "return"}
_IPT_IGNORED_WITH_VALUE = {"--comment", "--log-prefix", "--log-level", "--reject-with", "--set-mark", "--set-xmark"}


def _ipt_rule(tokens: Sequence[str], where: str, chain_names: Container[str] = ()) -> Rule:
    conds, verdict, target, negate, i = [], None, None, False, 0
    while i < len(tokens):
        token = tokens[i]
        value = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token == "!":
            negate, i = True, i + 1
            continue
        if token in ("-i", "--in-interface"):
            conds.append(Cond("iif", (value,), negate))
        elif token in ("-p", "--protocol"):
            conds.append(Cond("l4proto", (value,), negate))
        elif token in ("--dport", "--destination-port", "--dports", "--destination-ports"):
            ports = []
            for part in value.split(","):
                low, dummy, high = part.partition(":")
                ports.append((int(low or 0), int(high or low or 65535)))
            conds.append(Cond("dport", tuple(ports), negate))
        elif token in ("--state", "--ctstate"):
            conds.append(Cond("ctstate", tuple(value.split(",")), negate))
        elif token in ("-j", "--jump", "-g", "--goto"):
            if value in _IPT_TERMINAL:
                verdict = _IPT_TERMINAL[value]
            elif value in chain_names:
                verdict, target = ("goto" if token in ("-g", "--goto") else "jump"), value
            else:
                verdict = None  # LOG, NFLOG, MARK...: no verdict, the walk goes on
        elif token in ("-m", "--match") or token in _IPT_IGNORED_WITH_VALUE or token in ("-A", "--append"):
            pass
        elif token in ("-s", "--source", "-d", "--destination") and value in ("0.0.0.0/0",) and not negate:
            pass
        elif token.startswith("-"):
            # Any other match (an address, a limit, addrtype...) is undecided for the probe.
            taken = value if value and not value.startswith("-") else ""
            conds.append(Cond("unknown", (("! " if negate else "") + " ".join(filter(None, [token, taken])),)))
            i += 2 if taken else 1
            negate = False
            continue
        i += 2
        negate = False
    return Rule(tuple(conds), verdict, target, where)


def chains_from_iptables_save(text: str) -> dict[str, Chain]:
    """``{key: Chain}`` of the filter table in ``iptables-save`` output (INPUT is the base chain)."""
    chains, table = {}, None
    for line in (text or "").splitlines():
        line = line.strip()
        if line.startswith("*"):
            table = line[1:]
        elif table != "filter" or not line or line.startswith("#") or line == "COMMIT":
            continue
        elif line.startswith(":"):
            name, policy = (line[1:].split() + ["-"])[:2]
            chains[name] = Chain(name, [], name == "INPUT", DROP if policy == "DROP" else ACCEPT, "iptables-legacy filter %s" % name)
        elif line.startswith("-A "):
            tokens = shlex.split(line)
            name = tokens[1]
            if name in chains:
                chains[name].rules.append(_ipt_rule(tokens[2:], "%s rule %d" % (chains[name].where, len(chains[name].rules) + 1),
                                                    set(chains)))
    return {("legacy:%s" % name): dataclasses.replace(chain, rules=[
        dataclasses.replace(rule, target="legacy:%s" % rule.target) if rule.target else rule for rule in chain.rules])
        for name, chain in chains.items()}


# -- the walk ------------------------------------------------------------------------------

def walk(chains: Mapping[str, Chain], key: str, probe: Probe, depth: int = 0) -> Outcome:
    """Outcome of chain ``key`` for ``probe``: accept, drop, or continue (fell off the end or returned)."""
    chain = chains.get(key)
    if chain is None or depth > 16:
        return Outcome(CONTINUE, maybe=chain is None)
    maybe = False
    for rule in chain.rules:
        results = [cond.decide(probe) for cond in rule.conds]
        if False in results or rule.verdict is None:
            continue
        undecided = None in results
        if rule.verdict in ("jump", "goto"):
            inner = walk(chains, rule.target, probe, depth + 1)
            if inner.verdict == DROP:
                if not undecided:
                    return Outcome(DROP, inner.rule, maybe or inner.maybe)
                maybe_drop = Outcome(DROP, inner.rule, True)
                return maybe_drop if rule.verdict == "goto" else _first_drop(maybe_drop, walk_rest(chains, chain, rule, probe, depth))
            if inner.verdict == ACCEPT and not undecided:
                return Outcome(ACCEPT, inner.rule, maybe or inner.maybe)
            maybe = maybe or undecided or inner.maybe
            if rule.verdict == "goto" and not undecided:
                return Outcome(CONTINUE, maybe=maybe)
            continue
        if rule.verdict == "return":
            if undecided:
                maybe = True
                continue
            return Outcome(CONTINUE, maybe=maybe)
        if undecided:
            if rule.verdict == DROP:
                return _first_drop(Outcome(DROP, str(rule), True), walk_rest(chains, chain, rule, probe, depth))
            maybe = True  # an accept that may apply: a later drop is a "may drop"
            continue
        return Outcome(rule.verdict, str(rule), maybe)
    if chain.base and chain.policy == DROP:
        return Outcome(DROP, "%s: policy drop" % chain.where, maybe)
    return Outcome(CONTINUE, maybe=maybe)


def walk_rest(chains: Mapping[str, Chain], chain: Chain, after: Rule, probe: Probe, depth: int) -> Outcome:
    rest = Chain(chain.name, chain.rules[chain.rules.index(after) + 1:], chain.base, chain.policy, chain.where)
    key = "__rest__%d" % depth
    return walk(dict(chains, **{key: rest}), key, probe, depth + 1)


def _first_drop(maybe_drop: Outcome, rest: Outcome) -> Outcome:
    # A certain drop later in the chain says more than a maybe; otherwise the maybe stands.
    return rest if rest.verdict == DROP and not rest.maybe else maybe_drop


def judge(chains: Mapping[str, Chain], probe: Probe) -> Outcome:
    """The probe's fate through every base chain: an Outcome whose verdict is drop or accept."""
    for key, chain in sorted(chains.items()):
        if chain.base:
            outcome = walk(chains, key, probe)
            if outcome.verdict == DROP:
                return outcome
    return Outcome(ACCEPT)


def probes(interface: str, http_port: int) -> list[Probe]:
    return [Probe(interface, "udp", 67, "broadcast"), Probe(interface, "udp", 4011), Probe(interface, "udp", 69),
            Probe(interface, "tcp", http_port)]


def firewall_row(chains: Mapping[str, Chain], interface: str, http_port: int, sources: Sequence[str],
                 errors: Sequence[str] = ()) -> report.Row:
    """The verdict over the parsed ``chains``; ``sources`` names what was read, ``errors`` what could not be."""
    dropped, maybe = [], []
    for probe in probes(interface, http_port):
        outcome = judge(chains, probe)
        if outcome.verdict == DROP:
            (maybe if outcome.maybe else dropped).append("%s by %s" % (probe, outcome.rule))
    if dropped or maybe:
        detail = "; ".join(["drops " + text for text in dropped] + ["may drop " + text for text in maybe])
        hint = ("let them in on %s for the run, e.g. nft insert rule inet filter input iifname %s udp dport "
                "{ 67, 69, 4011 } accept; nft insert rule inet filter input iifname %s tcp dport %d accept "
                "(use the table and chain named above; with firewalld or ufw, open the same ports there)"
                % (interface, interface, interface, http_port))
        return report.failed(report.FIREWALL, detail, hint)
    if errors:
        return report.failed(report.FIREWALL, "could not read the ruleset: %s" % "; ".join(errors),
                             "install nftables (apt-get install nftables) and run as root")
    return report.passed(report.FIREWALL, "nothing drops UDP 67, 4011, 69 or TCP %d on %s (%s)" % (http_port, interface, ", ".join(sources)))


# -- reading --------------------------------------------------------------------------------

def _run(argv: list[str]) -> tuple[str | None, str | None]:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    if result.returncode != 0:
        return None, "%s: %s" % (" ".join(argv), result.stderr.strip() or "exit code %d" % result.returncode)
    return result.stdout, None


def read_firewall(interface: str, http_port: int) -> report.Row:
    chains, sources, errors = {}, [], []
    if shutil.which("nft"):
        output, error = _run(["nft", "-j", "list", "ruleset"])
        if error:
            errors.append(error)
        else:
            try:
                document = json.loads(output or "{}")
            except ValueError as exc:
                errors.append("nft -j printed no JSON (%s)" % exc)
            else:
                nft = chains_from_nft(document, interface)
                chains.update(nft)
                sources.append("nftables: %d chain(s)" % len(nft))
    else:
        errors.append("nft is not installed")
    # Legacy iptables keeps its own tables, which nft does not show; the alternative iptables-save may be either.
    if shutil.which("iptables-legacy-save"):
        output, error = _run(["iptables-legacy-save"])
        if error:
            errors.append(error)
        else:
            legacy = chains_from_iptables_save(output)
            chains.update(legacy)
            sources.append("iptables-legacy: %d chain(s)" % len(legacy))
    return firewall_row(chains, interface, http_port, sources, errors)
