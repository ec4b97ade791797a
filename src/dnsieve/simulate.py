"""Synthetic enterprise DNS with labelled, injected attacks.

:func:`simulate` returns a :class:`SimResult`: a Polars frame of DNS events (the
canonical column names of :data:`dnsieve.schema.DNS_EVENT`, minus the columns
ingest derives, plus ``uid`` and ``campaign``) and a frame of labels, one row
per (campaign, entity, detector family).  :func:`write_zeek` writes them as a
Zeek ``dns.log`` (TSV or JSON lines) and ``labels.csv``.

Everything is drawn from one NumPy ``Generator`` seeded by ``seed``, and the
``#open``/``#close`` header lines come from the data, so the same arguments
give byte-identical files.

Background model
----------------
* A registered-domain universe: about 250 hard-coded real domains (search,
  Microsoft/Google/Apple services, CDNs, ad-tech, SaaS, news) followed by
  seeded generated names (dictionary words and syllables on a realistic TLD
  mix).  Popularity is Zipf-like (weight ``1/rank``).  CDN sites have many
  host names, low TTLs and answer pools of 16-64 addresses; PSL private
  suffixes (``cloudfront.net``, ``akamaiedge.net`` ...) become many sites.
* Clients are workstations (95 %) and servers.  Each client has a personal
  set of habitual sites drawn from the popularity law, with its own rate
  for each; plus rare one-off "exploration" visits to long-tail sites.
* Time: a working-hours diurnal profile (UTC), quiet weekends, per-day
  presence (absences), machines left on overnight, and an automated share of
  traffic (telemetry, updates, Active Directory) that runs whenever the
  machine is on.  About 45 % of generated sites are intermittent: they are
  active in only 2-15 % of the hours.
* Queries come as A, with AAAA and HTTPS twins a few milliseconds later
  (dual-stack browsers), SRV for the AD zone ``corp.local``, PTR look-ups
  of internal and public addresses, and rare TXT/MX/NS/SOA.
* NXDOMAIN noise: search-suffix junk (``www.example.com.corp.local``),
  ``wpad``/``isatap`` probes, typos of visited domains, dead host names,
  unanswered PTRs; plus a little SERVFAIL and unanswered queries.
* Counts per (client, site, hour) are Poisson with the rates above, drawn
  exactly by a per-pair Poisson total spread over the hours by inverse CDF.

The rates give about 1.9 M events per week for 2,000 clients (about 950 per
client per week, about 170 per client per working day; 1.93 M for seeds 1 and
2, of which about 50 k injected).

Injected campaigns (several of each kind per simulated week, at seeded
times after a warm-up of min(24 h, hours/4))
----------------------------------------------------------------------------
``masquerade``  a quiet real site (few habitual visitors) suddenly visited over
                2-6 h by many clients that never went there (Emotet-style
                payload host); families ``visitors`` and ``volume``.
``volume_spike`` a moderately active site whose hourly volume jumps 8-25x over
                its busy-hour level (90th percentile of its active hours)
                for 2-6 h; family ``volume``.
``dga``         1-3 bots query a day's list of generated names (random
                letters or dictionary words) in bursts every 1-3 h, almost
                all NXDOMAIN; families ``nxdomain`` (client) and ``dga``
                (every generated registered domain queried).
``tunnel``      one client, 0.5-2 queries/s for 1-4 h, long base32 or hex
                labels under one domain, TXT/NULL/CNAME heavy with large
                answers; family ``tunnel``.
``beacon``      one client queries a C2 domain every 60-900 s (jitter up to
                10 %) for 12-48 h; family ``beacon`` (entity ``client|domain``).
``exfil``       one client sends one encoded-data query every 2-10 min on
                average for 24-96 h; family ``exfil``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from dnsieve.domains import DomainSplitter
from dnsieve.ingest.codes import qtype_code

__all__ = [
    "BENIGN_KINDS",
    "DEFAULT_START",
    "DGA_STYLES",
    "EVENTS_PER_CLIENT_WEEK",
    "FLOW_KINDS",
    "LABEL_COLUMNS",
    "THREAT_KINDS",
    "FlowSim",
    "SimResult",
    "campaign_counts",
    "dga_style_names",
    "read_dga_lists",
    "simulate",
    "simulate_flows",
    "write_conn",
    "write_zeek",
    "zeek_header",
]

#: Default first hour of a simulation: a Monday, so runs are reproducible.
DEFAULT_START = datetime(2024, 3, 4, tzinfo=UTC)

#: Approximate background events per client per simulated week (documented figure).
EVENTS_PER_CLIENT_WEEK = 950

#: Columns of ``labels.csv`` in order (``threat``: 1 attack, 0 benign anomaly).
LABEL_COLUMNS: tuple[str, ...] = (
    "kind",
    "entity_type",
    "entity",
    "window_start",
    "window_end",
    "detector_family",
    "description",
    "campaign",
    "threat",
)

#: Attack campaigns per simulated week at up to :data:`REFERENCE_CLIENTS` hosts
#: (at least one of each in any run; more hosts, more campaigns: see
#: :func:`campaign_counts`).
CAMPAIGNS_PER_WEEK: dict[str, int] = {
    "masquerade": 4,
    "volume_spike": 4,
    "dga": 3,
    "tunnel": 3,
    "beacon": 5,
    "exfil": 3,
    "newdomain": 3,
}

#: Benign anomalies per simulated week (label kinds ``benign_*``, threat 0).  They
#: outnumber the attacks: most anomalies an analyst sees are not threats.
BENIGN_PER_WEEK: dict[str, int] = {
    "benign_adoption": 10,
    "benign_update_burst": 8,
    "benign_cdn": 5,
    "benign_nx_misconfig": 6,
}

#: Attack kinds (threat = 1) and benign-anomaly kinds (threat = 0).
THREAT_KINDS: tuple[str, ...] = tuple(CAMPAIGNS_PER_WEEK)
BENIGN_KINDS: tuple[str, ...] = tuple(BENIGN_PER_WEEK)

#: Population up to which campaign counts are the per-week figures; above it
#: they grow with the square root of the population (4x at 8,000 hosts).
REFERENCE_CLIENTS = 500

#: Lexical styles of the reimplemented DGA generators (see :func:`dga_style_names`).
DGA_STYLES: tuple[str, ...] = ("hash", "letters", "pronounceable", "wordpair", "short")

INTERNAL_ZONE = "corp.local"

ZEEK_FIELDS: tuple[str, ...] = (
    "ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "trans_id",
    "rtt", "query", "qclass", "qclass_name", "qtype", "qtype_name", "rcode", "rcode_name",
    "AA", "TC", "RD", "RA", "Z", "answers", "TTLs", "rejected",
)  # fmt: skip
ZEEK_TYPES: tuple[str, ...] = (
    "time", "string", "addr", "port", "addr", "port", "enum", "count",
    "interval", "string", "count", "string", "count", "string", "count", "string",
    "bool", "bool", "bool", "bool", "count", "vector[string]", "vector[interval]", "bool",
)  # fmt: skip

# --------------------------------------------------------------------------- vocabulary

# (registered domain, class): web = user browsing, auto = telemetry/updates/PKI
# (runs whenever the machine is on), cdn = CDN infrastructure with many hosts,
# cdnp = a PSL private suffix whose children are separate registered domains.
WELL_KNOWN: tuple[tuple[str, str], ...] = (
    ("google.com", "web"), ("microsoft.com", "auto"), ("windowsupdate.com", "auto"),
    ("office.com", "web"), ("microsoftonline.com", "auto"), ("live.com", "auto"),
    ("gstatic.com", "cdn"), ("googleapis.com", "cdn"), ("office365.com", "auto"),
    ("windows.com", "auto"), ("akamaiedge.net", "cdnp"), ("cloudfront.net", "cdnp"),
    ("msftconnecttest.com", "auto"), ("digicert.com", "auto"), ("outlook.com", "web"),
    ("akamai.net", "cdn"), ("msedge.net", "cdn"), ("bing.com", "web"), ("youtube.com", "web"),
    ("sharepoint.com", "web"), ("office.net", "cdn"), ("msauth.net", "auto"),
    ("googleusercontent.com", "cdn"), ("doubleclick.net", "web"), ("googlevideo.com", "cdn"),
    ("ytimg.com", "cdn"), ("linkedin.com", "web"), ("licdn.com", "cdn"), ("azureedge.net", "cdnp"),
    ("trafficmanager.net", "cdnp"), ("windows.net", "auto"), ("skype.com", "auto"),
    ("teams.microsoft.com", "web"), ("msn.com", "web"), ("apple.com", "auto"),
    ("icloud.com", "auto"), ("mzstatic.com", "cdn"), ("aaplimg.com", "cdn"),
    ("amazonaws.com", "cdn"), ("amazon.com", "web"), ("media-amazon.com", "cdn"),
    ("cloudflare.com", "web"), ("cloudflare-dns.com", "auto"), ("fastly.net", "cdn"),
    ("akamaihd.net", "cdn"), ("edgekey.net", "cdnp"), ("edgesuite.net", "cdn"),
    ("akamaized.net", "cdnp"), ("jsdelivr.net", "cdn"), ("unpkg.com", "cdn"),
    ("facebook.com", "web"), ("fbcdn.net", "cdn"), ("instagram.com", "web"),
    ("cdninstagram.com", "cdn"), ("whatsapp.net", "auto"), ("whatsapp.com", "web"),
    ("twitter.com", "web"), ("x.com", "web"), ("twimg.com", "cdn"), ("t.co", "web"),
    ("reddit.com", "web"), ("redditmedia.com", "cdn"), ("pinterest.com", "web"),
    ("tiktok.com", "web"), ("tiktokcdn.com", "cdn"), ("netflix.com", "web"),
    ("nflxvideo.net", "cdn"), ("spotify.com", "web"), ("scdn.co", "cdn"), ("twitch.tv", "web"),
    ("discord.com", "web"), ("zoom.us", "web"), ("slack.com", "web"), ("slack-edge.com", "cdn"),
    ("webex.com", "web"), ("dropbox.com", "auto"), ("dropboxapi.com", "auto"), ("box.com", "web"),
    ("salesforce.com", "web"), ("force.com", "web"), ("servicenow.com", "web"),
    ("atlassian.net", "web"), ("atlassian.com", "web"), ("okta.com", "auto"),
    ("oktacdn.com", "cdn"), ("duosecurity.com", "auto"), ("zscaler.net", "auto"),
    ("crowdstrike.com", "auto"), ("sentinelone.net", "auto"), ("symantec.com", "auto"),
    ("mcafee.com", "auto"), ("trendmicro.com", "auto"), ("sophos.com", "auto"),
    ("adobe.com", "web"), ("adobe.io", "auto"), ("adobelogin.com", "auto"), ("typekit.net", "cdn"),
    ("wikipedia.org", "web"), ("wikimedia.org", "cdn"), ("stackoverflow.com", "web"),
    ("sstatic.net", "cdn"), ("yahoo.com", "web"), ("yimg.com", "cdn"), ("cnn.com", "web"),
    ("bbc.co.uk", "web"), ("bbci.co.uk", "cdn"), ("nytimes.com", "web"), ("wsj.com", "web"),
    ("reuters.com", "web"), ("bloomberg.com", "web"), ("theguardian.com", "web"),
    ("weather.com", "web"), ("ebay.com", "web"), ("paypal.com", "web"), ("walmart.com", "web"),
    ("etsy.com", "web"), ("booking.com", "web"), ("expedia.com", "web"), ("indeed.com", "web"),
    ("glassdoor.com", "web"), ("medium.com", "web"), ("quora.com", "web"), ("imdb.com", "web"),
    ("hubspot.com", "web"), ("hotjar.com", "web"), ("segment.io", "web"), ("newrelic.com", "auto"),
    ("nr-data.net", "auto"), ("datadoghq.com", "auto"), ("sentry.io", "auto"),
    ("mozilla.org", "web"), ("mozilla.net", "auto"), ("firefox.com", "auto"),
    ("ubuntu.com", "auto"), ("canonical.com", "auto"), ("debian.org", "web"),
    ("python.org", "web"), ("pypi.org", "web"), ("npmjs.org", "web"), ("npmjs.com", "web"),
    ("docker.com", "web"), ("docker.io", "web"), ("github.com", "web"),
    ("githubusercontent.com", "cdn"), ("githubassets.com", "cdn"), ("letsencrypt.org", "auto"),
    ("lencr.org", "auto"), ("globalsign.com", "auto"), ("sectigo.com", "auto"),
    ("usertrust.com", "auto"), ("verisign.com", "auto"), ("godaddy.com", "web"),
    ("ntp.org", "auto"), ("apple-dns.net", "auto"), ("icloud-content.com", "cdn"),
    ("opera.com", "web"), ("brave.com", "web"), ("duckduckgo.com", "web"), ("baidu.com", "web"),
    ("yandex.ru", "web"), ("vk.com", "web"), ("mail.ru", "web"), ("qq.com", "web"),
    ("alibaba.com", "web"), ("aliexpress.com", "web"), ("samsung.com", "web"), ("hp.com", "auto"),
    ("dell.com", "auto"), ("lenovo.com", "auto"), ("intel.com", "auto"), ("nvidia.com", "auto"),
    ("cisco.com", "web"), ("vmware.com", "web"), ("oracle.com", "web"), ("ibm.com", "web"),
    ("sap.com", "web"), ("workday.com", "web"), ("adp.com", "web"), ("zendesk.com", "web"),
    ("zdassets.com", "cdn"), ("intercom.io", "web"), ("gravatar.com", "cdn"),
    ("wordpress.com", "web"), ("wp.com", "cdn"), ("shopify.com", "web"), ("squarespace.com", "web"),
    ("wix.com", "web"), ("mailchimp.com", "web"), ("sendgrid.net", "web"), ("criteo.com", "web"),
    ("taboola.com", "web"), ("outbrain.com", "web"), ("adnxs.com", "web"),
    ("rubiconproject.com", "web"), ("pubmatic.com", "web"), ("casalemedia.com", "web"),
    ("openx.net", "web"), ("scorecardresearch.com", "web"), ("quantserve.com", "web"),
    ("demdex.net", "web"), ("omtrdc.net", "web"), ("everesttech.net", "web"),
    ("amazon-adsystem.com", "web"), ("moatads.com", "web"), ("adsrvr.org", "web"),
    ("bidswitch.net", "web"), ("3lift.com", "web"), ("google-analytics.com", "web"),
    ("googletagmanager.com", "web"), ("googlesyndication.com", "web"),
    ("googleadservices.com", "web"), ("gvt1.com", "auto"), ("gvt2.com", "auto"),
    ("1e100.net", "auto"), ("gmail.com", "web"), ("android.com", "auto"),
    ("chromium.org", "web"), ("xboxlive.com", "auto"), ("visualstudio.com", "web"),
    ("aka.ms", "web"), ("sfx.ms", "cdn"), ("s-microsoft.com", "cdn"), ("msecnd.net", "cdn"),
    ("msocsp.com", "auto"), ("onenote.com", "web"), ("onedrive.com", "auto"), ("1drv.com", "auto"),
    ("azure.com", "web"), ("microsoftstore.com", "web"), ("bbc.com", "web"),
    ("forbes.com", "web"), ("ft.com", "web"), ("economist.com", "web"), ("apnews.com", "web"),
    ("usps.com", "web"), ("fedex.com", "web"), ("ups.com", "web"), ("dhl.com", "web"),
    ("chase.com", "web"), ("bankofamerica.com", "web"), ("wellsfargo.com", "web"),
    ("americanexpress.com", "web"), ("visa.com", "web"), ("mastercard.com", "web"),
    ("irs.gov", "web"), ("nih.gov", "web"), ("europa.eu", "web"), ("ox.ac.uk", "web"),
    ("coursera.org", "web"), ("udemy.com", "web"), ("khanacademy.org", "web"),
    ("grammarly.com", "auto"), ("grammarly.io", "auto"), ("lastpass.com", "auto"),
    ("1password.com", "auto"), ("bitwarden.com", "auto"), ("notion.so", "web"),
    ("figma.com", "web"), ("miro.com", "web"), ("trello.com", "web"), ("asana.com", "web"),
    ("monday.com", "web"), ("gitlab.com", "web"), ("bitbucket.org", "web"),
    ("jetbrains.com", "auto"), ("openai.com", "web"), ("chatgpt.com", "web"),
)  # fmt: skip

# Host names of some well-known sites (the first is the most queried).
WELL_KNOWN_HOSTS: dict[str, tuple[str, ...]] = {
    "google.com": (
        "www",
        "accounts",
        "clients4",
        "mail",
        "apis",
        "ogs",
        "play",
        "docs",
        "drive",
        "calendar",
        "meet",
        "clientservices",
        "update",
        "safebrowsing",
        "lh3",
    ),
    "microsoft.com": (
        "www",
        "login",
        "go",
        "settings-win.data",
        "v10.events.data",
        "self.events.data",
        "watson.telemetry",
        "activity.windows",
        "ctldl.windowsupdate",
        "officecdn",
        "config.edge.skype",
        "nav.smartscreen",
    ),
    "windowsupdate.com": ("ctldl", "download", "au", "dl.delivery.mp", "fe2.update", "sls.update"),
    "windows.com": (
        "time",
        "client.wns",
        "settings-win.data",
        "arc.msn",
        "slscr.update",
        "fe3.delivery.mp",
    ),
    "office.com": ("www", "outlook", "portal", "substrate", "res.cdn", "admin"),
    "microsoftonline.com": ("login", "autologon", "device.login", "enterpriseregistration"),
    "live.com": ("login", "outlook", "odc.officeapps", "ocws.officeapps", "storage"),
    "msftconnecttest.com": ("www", "ipv6"),
    "digicert.com": ("ocsp", "crl3", "crl4", "cacerts", "www"),
    "apple.com": (
        "www",
        "gs.apple",
        "configuration",
        "mesu",
        "gdmf",
        "ocsp",
        "valid",
        "swscan",
        "xp",
    ),
    "ntp.org": ("pool", "0.pool", "1.pool", "2.pool", "3.pool"),
    "lencr.org": ("r3.o", "r10.o", "r11.o", "x1.c", "r3.i"),
    "letsencrypt.org": ("www", "acme-v02.api", "community"),
    "github.com": ("", "api", "codeload", "objects", "collector", "alive"),
    "slack.com": ("app", "edgeapi", "wss-primary", "files", "a"),
    "zoom.us": ("www", "us02web", "us04web", "zoomgov", "log"),
    "okta.com": ("login", "ok12static", "acme"),
}

_GENERIC_HOSTS = ("www", "", "api", "static", "cdn", "login", "img", "m", "assets", "app",
                  "auth", "media", "metrics", "beacon", "help", "support", "blog", "news")  # fmt: skip
_SMALL_HOSTS = ("mail", "shop", "blog", "api", "cdn", "static", "portal", "app", "news", "my",
                "secure", "en", "store", "docs")  # fmt: skip

INTERNAL_HOSTS: tuple[str, ...] = (
    "dc01", "dc02", "fs01", "intranet", "exchange", "sccm", "wsus", "proxy", "print01",
    "sharepoint", "hr-portal", "vpn", "jira", "git", "_ldap._tcp.dc._msdcs",
    "_kerberos._tcp.dc._msdcs", "_ldap._tcp.default-first-site-name._sites.dc._msdcs",
    "_gc._tcp", "_kerberos._udp", "wpad", "isatap", "_ldap._tcp.pdc._msdcs",
)  # fmt: skip
INTERNAL_NX_HOSTS = frozenset({"wpad", "isatap"})

# Common English words for generated site names and the dictionary DGA.
WORDS: tuple[str, ...] = (
    "apple", "river", "stone", "cloud", "green", "north", "south", "bright", "light", "house",
    "garden", "market", "media", "digital", "smart", "blue", "red", "silver", "golden", "star",
    "sun", "moon", "ocean", "lake", "forest", "hill", "valley", "bridge", "city", "town",
    "local", "global", "tech", "data", "soft", "net", "web", "link", "hub", "point", "path",
    "way", "line", "box", "bay", "port", "gate", "field", "park", "land", "home", "life",
    "health", "care", "pet", "food", "fresh", "kitchen", "coffee", "tea", "wine", "beer",
    "travel", "trip", "tour", "hotel", "car", "auto", "bike", "sport", "game", "play", "fun",
    "music", "sound", "radio", "video", "photo", "art", "design", "studio", "craft", "shop",
    "store", "deal", "price", "buy", "sale", "trade", "money", "bank", "pay", "cash", "fund",
    "capital", "group", "team", "club", "school", "learn", "study", "book", "paper", "news",
    "daily", "weekly", "times", "post", "press", "journal", "review", "guide", "info", "help",
    "support", "service", "pro", "expert", "build", "home", "work", "job", "career", "office",
    "legal", "law", "tax", "energy", "power", "solar", "wind", "water", "fire", "earth", "eco",
    "farm", "seed", "tree", "leaf", "flower", "rose", "pine", "oak", "maple", "cedar", "peak",
    "summit", "rock", "iron", "steel", "gold", "pixel", "code", "logic", "mind", "brain",
    "vision", "focus", "clear", "true", "pure", "simple", "quick", "fast", "easy", "best",
    "prime", "first", "next", "new", "open", "free", "wise", "happy", "lucky", "bold", "brave",
    "wild", "urban", "metro", "coast", "harbor", "island", "alpine", "prairie", "desert",
    "canyon", "meadow", "creek", "spring", "summer", "winter", "autumn", "dawn", "dusk",
    "night", "day", "time", "clock", "wave", "spark", "flash", "bolt", "rocket", "orbit",
    "planet", "comet", "nova", "atlas", "titan", "phoenix", "eagle", "falcon", "hawk", "wolf",
    "bear", "fox", "lion", "tiger", "otter", "owl", "swan", "crane", "dolphin", "whale",
    "castle", "tower", "crown", "king", "queen", "royal", "noble", "union", "alliance",
    "partner", "family", "kids", "baby", "mom", "dad", "friend", "people", "social", "talk",
    "chat", "mail", "letter", "print", "ink", "paint", "color", "style", "fashion", "beauty",
    "skin", "hair", "fit", "yoga", "dance", "movie", "film", "show", "stage", "event",
    "ticket", "party", "wedding", "gift", "toy", "craft", "tool", "parts", "supply", "factory",
)  # fmt: skip

_ONSETS = ("b", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br",
           "cr", "dr", "fl", "gr", "pl", "pr", "st", "tr", "sh", "ch", "th", "")  # fmt: skip
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ia", "io", "ea", "y")
_CODAS = ("", "", "", "n", "r", "l", "s", "x", "m", "t", "nd", "rk")

_TLDS = ("com", "net", "org", "io", "co.uk", "de", "fr", "nl", "ca", "com.au", "co", "us",
         "info", "biz", "eu", "ch", "se", "es", "it", "jp", "in", "app", "dev")  # fmt: skip
_TLD_P = np.array([50, 9, 8, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], float)

_DGA_TLDS = ("com", "net", "org", "info", "biz", "ru", "top", "xyz", "cc")
_C2_TLDS = ("com", "net", "xyz", "top", "online", "site", "info", "live")

_B62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)
_B32 = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz234567", np.uint8)
_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", np.uint8)
_B64 = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", np.uint8)

_KIND_WEB, _KIND_CDN, _KIND_AUTO, _KIND_INTERNAL = 0, 1, 2, 3
_KIND_CODE = {"web": _KIND_WEB, "cdn": _KIND_CDN, "auto": _KIND_AUTO}

# Mandatory sites every client queries (automated share high).
_MANDATORY = (INTERNAL_ZONE, "windowsupdate.com", "microsoft.com", "windows.com",
              "msftconnecttest.com", "microsoftonline.com", "live.com", "digicert.com",
              "google.com", "gstatic.com", "office.com")  # fmt: skip

# Weekday user-activity profile by UTC hour of day (1.0 = busiest).
_USER_PROFILE = np.array(
    [0.03, 0.02, 0.02, 0.02, 0.03, 0.05, 0.15, 0.45, 0.85, 1.0, 1.0, 0.95,
     0.7, 0.9, 1.0, 1.0, 0.9, 0.65, 0.35, 0.2, 0.15, 0.12, 0.08, 0.05]
)  # fmt: skip
_WORK_HOURS = (7, 19)  # machines of present users are on between these hours

# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class SimResult:
    """A simulation: events, labels and the parameters that produced them.

    ``events`` columns: ``ts`` (Datetime[us, UTC]), ``uid``, ``src_ip``,
    ``src_port``, ``dst_ip``, ``dst_port``, ``proto``, ``trans_id``, ``rtt``
    (seconds, null when unanswered), ``qname``, ``qtype``, ``rcode`` (null when
    unanswered), ``aa``, ``tc``, ``rd``, ``ra``, ``answers`` (list[str]),
    ``ttls`` (list[f64]), ``registered_domain`` and ``campaign`` (the label
    campaign id of injected events, null for background), sorted by time.

    ``labels`` has :data:`LABEL_COLUMNS`; windows are ISO-8601 UTC strings
    and every injected event of a campaign lies in ``[window_start, window_end)``.
    """

    events: pl.DataFrame
    labels: pl.DataFrame
    start: datetime
    hours: int
    clients: int
    seed: int
    stats: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def _fixed_strings(mat: np.ndarray) -> pl.Series:
    """Rows of an ``(n, w)`` uint8 ASCII matrix as a Polars String series."""
    n, w = mat.shape
    buf = np.ascontiguousarray(mat, dtype=np.uint8).tobytes()
    offsets = np.arange(0, (n + 1) * w, w, dtype=np.int64)
    arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(buf))
    return pl.Series(pl.from_arrow(arr)).cast(pl.String)


def _random_chars(rng: np.random.Generator, n: int, width: int, alphabet: np.ndarray) -> np.ndarray:
    """An ``(n, width)`` matrix of characters drawn uniformly from ``alphabet``."""
    b = np.frombuffer(rng.bytes(n * width), dtype=np.uint8).reshape(n, width)
    return alphabet[b % len(alphabet)]


def _iso(ts_us: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ts_us)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def _site_labels(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` plausible second-level labels: words, syllables, or a mix."""
    style = rng.random(n).tolist()
    w1 = rng.integers(0, len(WORDS), n).tolist()
    w2 = rng.integers(0, len(WORDS), n).tolist()
    nsyl = rng.integers(2, 4, n).tolist()
    ons = rng.integers(0, len(_ONSETS), (n, 3)).tolist()
    vow = rng.integers(0, len(_VOWELS), (n, 3)).tolist()
    coda = rng.integers(0, len(_CODAS), n).tolist()
    num = rng.integers(1, 100, n).tolist()
    out = []
    for i in range(n):
        st = style[i]
        if st < 0.35:
            out.append(WORDS[w1[i]] + WORDS[w2[i]])
        elif st < 0.5:
            out.append(WORDS[w1[i]] + "-" + WORDS[w2[i]])
        elif st < 0.92:
            syl = "".join(_ONSETS[ons[i][j]] + _VOWELS[vow[i][j]] for j in range(nsyl[i]))
            syl += _CODAS[coda[i]]
            out.append(syl if st < 0.8 else syl + WORDS[w2[i]])
        else:
            out.append(f"{WORDS[w1[i]]}{num[i]}")
    return out


def _site_label(rng: np.random.Generator) -> str:
    """One plausible second-level label."""
    return _site_labels(rng, 1)[0]


def _typo(label: str, pos: float, op: int, letter: int) -> str:
    """A one-edit typo of ``label``: drop (0), swap (1), double (2) or replace (3) a letter.

    >>> _typo("google", 0.0, 0, 0), _typo("google", 0.0, 1, 0), _typo("google", 0.99, 3, 0)
    ('gogle', 'ogogle', 'googae')
    """
    if len(label) < 4:
        return label + label[-1]
    i = 1 + int(pos * (len(label) - 2))
    if op == 0:
        return label[:i] + label[i + 1 :]
    if op == 1:
        return label[: i - 1] + label[i] + label[i - 1] + label[i + 1 :]
    if op == 2:
        return label[:i] + label[i] + label[i:]
    return label[:i] + chr(int(_LETTERS[letter % 26])) + label[i + 1 :]


# --------------------------------------------------------------------------- universe


@dataclass
class _Universe:
    names: list[str]
    labels: list[str]  # leftmost label of the registered domain
    suffixes: list[str]
    kind: np.ndarray
    generated: np.ndarray
    weight: np.ndarray
    ttl: np.ndarray
    n_ans: np.ndarray
    pool: np.ndarray
    ip_start: np.ndarray  # offsets into ip4 / ip6 tables
    has_v6: np.ndarray
    active_q: np.ndarray
    host_start: np.ndarray
    n_hosts: np.ndarray
    host_fqdn: list[str]
    host_nx: np.ndarray
    host_srv: np.ndarray
    ip4: list[str]
    ip6: list[str]
    typos: list[str]
    host_rd: list[str]  # registered domain of each host name (PSL split)
    site_ok: np.ndarray  # every host of the site splits to the site's name
    index: dict[str, int]
    # Sites the background never visits (weight 0), kept for campaigns that
    # need a never-seen domain with real answers: kind -> site indices.
    reserved: dict[str, list[int]] = field(default_factory=dict)


_FIXED_CHILDREN: dict[str, tuple[str, ...]] = {
    "googleapis.com": ("www", "fonts", "ajax", "storage", "maps", "translate", "content",
                       "firebaseinstallations", "android", "youtube", "play", "oauth2"),
    "githubusercontent.com": ("raw", "avatars", "objects", "user-images", "camo",
                              "private-user-images"),
}  # fmt: skip


def _cdnp_children(rng: np.random.Generator, parent: str, n: int) -> list[tuple[str, list[str]]]:
    """Child sites of a PSL private suffix, each with its host prefixes."""
    out: list[tuple[str, list[str]]] = []
    for _ in range(n):
        if parent == "cloudfront.net":
            lab = "d" + "".join(chr(int(c)) for c in _random_chars(rng, 1, 13, _B62[:36])[0])
            out.append((f"{lab.lower()}.{parent}", [""]))
        elif parent == "akamaiedge.net":
            lab = ("dscb", "dsca", "dscd", "dscg", "dscx", "dsce", "b", "a")[int(rng.integers(8))]
            hosts = [
                f"e{int(rng.integers(1000, 99999))}" for _ in range(int(rng.integers(20, 120)))
            ]
            out.append((f"{lab}{int(rng.integers(0, 9)) or ''}.{parent}", hosts))
        elif parent in _FIXED_CHILDREN:
            for lab in _FIXED_CHILDREN[parent]:
                out.append((f"{lab}.{parent}", [""]))
            break
        else:
            lab = WORDS[int(rng.integers(len(WORDS)))] + str(int(rng.integers(1, 999)))
            if parent == "edgekey.net":
                lab = (
                    "www."
                    + WORDS[int(rng.integers(len(WORDS)))]
                    + "-c-"
                    + str(int(rng.integers(1, 9)))
                )
                lab = lab.split(".", 1)[1]
            out.append((f"{lab}.{parent}", [""]))
    # de-duplicate while keeping order
    seen: dict[str, list[str]] = {}
    for name, hosts in out:
        seen.setdefault(name, hosts)
    return list(seen.items())


# Never-seen sites for campaigns: (name style, TLDs, host names, kind).
_RESERVED_STYLE: dict[str, tuple[tuple[str, ...], tuple[str, ...], int]] = {
    "newdomain": (
        ("com", "net", "xyz", "top", "online", "site", "info", "live", "shop", "click"),
        ("", "www", "login", "secure", "account", "portal", "cdn", "docs"),
        _KIND_WEB,
    ),
    "benign_adoption": (
        ("io", "com", "app", "ai", "co", "cloud", "dev"),
        ("app", "api", "www", "cdn", "auth", "ws", "static", "events", "files"),
        _KIND_WEB,
    ),
    "benign_cdn": (("net", "com", "io"), (), _KIND_CDN),
}


def _reserved_sites(
    rng: np.random.Generator, kind: str, n: int, known: set[str]
) -> list[tuple[str, int, list[str]]]:
    """``n`` never-seen sites for ``kind`` campaigns: (name, site kind, host names)."""
    tlds, host_names, site_kind = _RESERVED_STYLE[kind]
    out: list[tuple[str, int, list[str]]] = []
    while len(out) < n:
        lab = _site_label(rng)
        if kind == "benign_cdn":
            lab += ("cdn", "edge", "static", "cache", "-cdn", "-edge")[int(rng.integers(6))]
            hosts = list(
                dict.fromkeys(
                    f"{('e', 'a', 'edge', 'img', 's', 'v')[int(rng.integers(6))]}"
                    f"{int(rng.integers(1, 9999))}"
                    for _ in range(int(rng.integers(30, 160)))
                )
            )
        else:
            k = int(rng.integers(1, 4 if kind == "newdomain" else 7))
            hosts = [host_names[j] for j in sorted(rng.permutation(len(host_names))[:k])]
        name = f"{lab}.{tlds[int(rng.integers(len(tlds)))]}"
        if name in known:
            continue
        known.add(name)
        out.append((name, site_kind, hosts))
    return out


def _build_universe(
    rng: np.random.Generator,
    n_generated: int,
    n_clients: int,
    reserve: dict[str, int] | None = None,
) -> _Universe:
    names: list[str] = []
    labels: list[str] = []
    suffixes: list[str] = []
    kinds: list[int] = []
    gen: list[bool] = []
    hosts: list[list[str]] = []

    def add(name: str, kind: int, host_list: list[str], generated: bool) -> None:
        names.append(name)
        lab, _, suf = name.partition(".")
        labels.append(lab)
        suffixes.append(suf)
        kinds.append(kind)
        gen.append(generated)
        hosts.append(host_list)

    # Internal AD zone first (most queried); workstation names serve PTR answers.
    add(INTERNAL_ZONE, _KIND_INTERNAL, list(INTERNAL_HOSTS), False)
    splitter = DomainSplitter()
    for name, cls in WELL_KNOWN:
        if cls != "cdnp" and splitter.split("x." + name)[0] != name:
            cls = "cdnp"  # a PSL private suffix: each child is its own registered domain
        if cls == "cdnp":
            for child, hl in _cdnp_children(rng, name, int(rng.integers(6, 30))):
                add(child, _KIND_CDN, hl, False)
            continue
        if name.count(".") > 1 and name.split(".", 1)[1] in {n for n, _ in WELL_KNOWN}:
            continue  # a host of another entry (teams.microsoft.com)
        kind = _KIND_CODE[cls]
        if name in WELL_KNOWN_HOSTS:
            hl = list(WELL_KNOWN_HOSTS[name])
        elif kind == _KIND_CDN:
            k = int(rng.integers(15, 150))
            hl = [
                f"{('e', 'a', 'cdn', 'edge', 'img', 's', 'r')[int(rng.integers(7))]}{int(rng.integers(1, 9999))}"
                for _ in range(k)
            ]
            hl = list(dict.fromkeys(hl))
        else:
            k = int(rng.integers(2, 9))
            hl = list(_GENERIC_HOSTS[:k])
        add(name, kind, hl, False)
    known = set(names)
    known.update(n for n, _ in WELL_KNOWN)
    tld_p = _TLD_P / _TLD_P.sum()
    m = n_generated * 2
    tld_idx = rng.choice(len(_TLDS), size=m, p=tld_p).tolist()
    cand = _site_labels(rng, m)
    n_extra = rng.integers(0, 4, m).tolist()
    extra_order = np.argsort(rng.random((m, len(_SMALL_HOSTS))), axis=1)[:, :3].tolist()
    made = 0
    for i in range(m):
        if made >= n_generated:
            break
        name = f"{cand[i]}.{_TLDS[tld_idx[i]]}"
        if name in known:
            continue
        known.add(name)
        extra = [_SMALL_HOSTS[j] for j in extra_order[i][: n_extra[i]]]
        add(name, _KIND_WEB, ["www", "", *extra], True)
        made += 1
    reserved: dict[str, list[int]] = {}
    for rkind, count in sorted((reserve or {}).items()):
        for name, skind, hl in _reserved_sites(rng, rkind, count, known):
            reserved.setdefault(rkind, []).append(len(names))
            add(name, skind, hl, True)

    n = len(names)
    kind_a = np.array(kinds, dtype=np.int8)
    gen_a = np.array(gen, dtype=bool)
    rank = np.arange(1, n + 1, dtype=np.float64)
    weight = 1.0 / rank
    res_idx = np.array([j for v in reserved.values() for j in v], dtype=np.int64)
    weight[res_idx] = 0.0  # the background never visits a reserved site
    ttl = np.where(
        kind_a == _KIND_CDN,
        rng.integers(20, 61, n),
        np.where(kind_a == _KIND_INTERNAL, 1200, rng.choice([60, 300, 600, 1800, 3600, 14400], n)),
    ).astype(np.int64)
    n_ans = np.where(kind_a == _KIND_CDN, rng.integers(2, 9, n), rng.integers(1, 3, n)).astype(
        np.int64
    )
    pool = np.where(kind_a == _KIND_CDN, rng.integers(16, 65, n), n_ans).astype(np.int64)
    has_v6 = (rng.random(n) < np.where(gen_a, 0.25, 0.75)) & (kind_a != _KIND_INTERNAL)
    active_q = np.ones(n, dtype=np.float64)
    inter = gen_a & (rng.random(n) < 0.45)
    active_q[inter] = rng.uniform(0.02, 0.15, int(inter.sum()))
    wk_inter = (~gen_a) & (kind_a == _KIND_WEB) & (rng.random(n) < 0.1)
    active_q[wk_inter] = rng.uniform(0.1, 0.4, int(wk_inter.sum()))
    active_q[res_idx] = 1.0

    # IP tables: one block of `pool` addresses per site.
    ip_start = np.zeros(n, dtype=np.int64)
    ip_start[1:] = np.cumsum(pool)[:-1]
    total_ips = int(pool.sum())
    first = rng.integers(1, 224, total_ips)
    first = np.where(np.isin(first, (10, 127, 169, 172, 192)), first + 1, first)
    octs = rng.integers(0, 256, (total_ips, 3))
    ip4 = [f"{a}.{b}.{c}.{d}" for a, (b, c, d) in zip(first.tolist(), octs.tolist(), strict=True)]
    internal_pool = int(pool[0])
    ip4[:internal_pool] = [f"10.0.1.{10 + j}" for j in range(internal_pool)]
    groups = rng.integers(1, 9999, (total_ips, 2))
    prefixes = ("2606:4700", "2a00:1450", "2620:1ec", "2600:1f18", "2a03:2880", "2001:4860")
    pre = rng.integers(0, len(prefixes), total_ips)
    ip6 = [
        f"{prefixes[p]}:{g1}::{g2}"
        for p, (g1, g2) in zip(pre.tolist(), groups.tolist(), strict=True)
    ]

    n_hosts = np.array([len(h) for h in hosts], dtype=np.int64)
    host_start = np.zeros(n, dtype=np.int64)
    host_start[1:] = np.cumsum(n_hosts)[:-1]
    host_fqdn = [
        f"{h}.{name}" if h else name for name, hl in zip(names, hosts, strict=True) for h in hl
    ]
    host_srv = np.array([h.startswith("_") for hl in hosts for h in hl], dtype=bool)
    host_nx = np.array(
        [h in INTERNAL_NX_HOSTS for h in hosts[0]] + [False] * (len(host_fqdn) - len(hosts[0]))
    )
    # A few dead host names (never the first of a site) answer NXDOMAIN.
    pos_in_site = np.arange(len(host_fqdn)) - np.repeat(host_start, n_hosts)
    dead = (pos_in_site > 0) & (rng.random(len(host_fqdn)) < 0.04)
    dead[: len(hosts[0])] = False
    host_nx |= dead

    typos = []
    t_pos = rng.random(n).tolist()
    t_op = rng.integers(0, 4, n).tolist()
    t_let = rng.integers(0, 26, n).tolist()
    for j, (lab, suf) in enumerate(zip(labels, suffixes, strict=True)):
        typo = f"{_typo(lab, t_pos[j], t_op[j], t_let[j])}.{suf}"
        ok = j > 0 and typo not in known and splitter.split("www." + typo)[0] == typo
        typos.append(typo if ok else "")
    # Registered domain of each host name by the same PSL split ingest uses.  A
    # generated site's hosts are single labels over it, so one check per site.
    gen_ok = [g and splitter.split("www." + nm)[0] == nm for g, nm in zip(gen, names, strict=True)]
    host_rd = [
        nm if gen_ok[si] else splitter.split(h)[0]
        for si, (nm, hl) in enumerate(zip(names, hosts, strict=True))
        for h in (f"{x}.{nm}" if x else nm for x in hl)
    ]
    site_of_host = np.repeat(np.arange(n), n_hosts)
    bad = np.array([rd != names[si] for rd, si in zip(host_rd, site_of_host.tolist(), strict=True)])
    site_ok = np.bincount(site_of_host[bad], minlength=n) == 0
    return _Universe(
        names=names, labels=labels, suffixes=suffixes, kind=kind_a, generated=gen_a,
        weight=weight, ttl=ttl, n_ans=n_ans, pool=pool, ip_start=ip_start, has_v6=has_v6,
        active_q=active_q, host_start=host_start, n_hosts=n_hosts, host_fqdn=host_fqdn,
        host_nx=host_nx, host_srv=host_srv, ip4=ip4, ip6=ip6, typos=typos, host_rd=host_rd,
        site_ok=site_ok,
        index={nm: j for j, nm in enumerate(names)}, reserved=reserved,
    )  # fmt: skip


# --------------------------------------------------------------------------- clients and time


@dataclass
class _Clients:
    n: int
    ips: list[str]
    names: list[str]
    server: np.ndarray
    user: np.ndarray  # (C, H) user-activity intensity
    on: np.ndarray  # (C, H) machine on (0/1)
    activity: np.ndarray  # per-client rate multiplier


def _hour_profiles(start: datetime, hours: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hour of day, weekday (0 = Monday) and day index of each simulated hour."""
    t0 = start.replace(minute=0, second=0, microsecond=0)
    hod = np.array([(t0 + timedelta(hours=h)).hour for h in range(hours)], dtype=np.int64)
    dow = np.array([(t0 + timedelta(hours=h)).weekday() for h in range(hours)], dtype=np.int64)
    day = np.array([((t0 + timedelta(hours=h)).date() - t0.date()).days for h in range(hours)])
    return hod, dow, day


def _build_clients(rng: np.random.Generator, n: int, start: datetime, hours: int) -> _Clients:
    server = np.zeros(n, dtype=bool)
    server[np.arange(n) % 20 == 19] = True
    ips = []
    names = []
    ws = 0
    k = 0
    for i in range(n):
        if server[i]:
            k += 1
            ips.append(f"10.1.{k // 250}.{1 + k % 250}")
            names.append(f"srv-{k:03d}.{INTERNAL_ZONE}")
        else:
            ips.append(f"10.20.{ws // 250}.{1 + ws % 250}")
            names.append(f"ws-{ws:04d}.{INTERNAL_ZONE}")
            ws += 1
    hod, dow, day = _hour_profiles(start, hours)
    n_days = int(day.max()) + 1 if hours else 1
    weekend = dow >= 5
    day_weekend = np.zeros(n_days, dtype=bool)
    day_weekend[day] = weekend
    present = rng.random((n, n_days)) < np.where(day_weekend, 0.08, 0.9)[None, :]
    prof = _USER_PROFILE[hod] * np.where(weekend, 0.8, 1.0)
    user = present[:, day] * prof[None, :]
    working = (hod >= _WORK_HOURS[0]) & (hod < _WORK_HOURS[1])
    left_on = rng.random(n) < 0.3
    on = (present[:, day] & working[None, :]) | left_on[:, None]
    on = on.astype(np.float64)
    user[server] = 0.05
    on[server] = 1.0
    activity = rng.lognormal(0.0, 0.5, n)
    return _Clients(n, ips, names, server, user.astype(np.float64), on, activity)


# --------------------------------------------------------------------------- background


_QT_NAMES = ("A", "AAAA", "HTTPS", "TXT", "MX", "NS", "SOA", "SRV", "PTR")
(_QA, _QAAAA, _QHTTPS, _QTXT, _QMX, _QNS, _QSOA, _QSRV, _QPTR) = range(9)
_RC_NAMES = ("NOERROR", "NXDOMAIN", "SERVFAIL")


@dataclass
class _Events:
    """Background/site events as parallel arrays before they become strings."""

    ts: np.ndarray  # int64 µs
    client: np.ndarray  # int32
    site: np.ndarray  # int64
    campaign: list[str | None] = field(default_factory=list)


def _pairs(
    rng: np.random.Generator, uni: _Universe, cl: _Clients
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Habitual (client, site) pairs and their rate weights."""
    n_sites = len(uni.names)
    cdf = np.cumsum(uni.weight[1:])  # the internal zone is mandatory, not drawn
    cdf /= cdf[-1]
    draws = np.where(
        cl.server,
        rng.integers(4, 12, cl.n),
        rng.lognormal(np.log(45), 0.45, cl.n).astype(np.int64) + 5,
    )
    c_idx = np.repeat(np.arange(cl.n), draws)
    s_idx = np.searchsorted(cdf, rng.random(len(c_idx)), side="right") + 1
    s_idx = np.minimum(s_idx, n_sites - 1)
    mand = np.array([uni.index[m] for m in _MANDATORY if m in uni.index])
    c_idx = np.concatenate([c_idx, np.repeat(np.arange(cl.n), len(mand))])
    s_idx = np.concatenate([s_idx, np.tile(mand, cl.n)])
    key = c_idx.astype(np.int64) * n_sites + s_idx
    uniq, mult = np.unique(key, return_counts=True)
    pc = (uniq // n_sites).astype(np.int64)
    ps = (uniq % n_sites).astype(np.int64)
    affinity = rng.lognormal(0.0, 1.0, len(uniq)) * np.sqrt(mult)
    return pc, ps, affinity


def _site_masks(rng: np.random.Generator, uni: _Universe, hours: int) -> np.ndarray:
    """(S, H) activity multiplier: intermittent sites are active a few hours a week."""
    q = uni.active_q
    inter = q < 1.0
    mask = np.ones((len(q), hours), dtype=np.float32)
    sub = rng.random((int(inter.sum()), hours)) < q[inter, None]
    mask[inter] = sub * 2.5
    return mask


def _background_arrays(
    rng: np.random.Generator, uni: _Universe, cl: _Clients, hours: int, t0_us: int, rate: float
) -> _Events:
    pc, ps, aff = _pairs(rng, uni, cl)
    mask = _site_masks(rng, uni, hours)
    auto = np.select(
        [uni.kind == _KIND_AUTO, uni.kind == _KIND_INTERNAL, uni.kind == _KIND_CDN],
        [0.75, 0.6, 0.25],
        0.1,
    )
    r = rate * aff * cl.activity[pc]
    ts_parts: list[np.ndarray] = []
    c_parts: list[np.ndarray] = []
    s_parts: list[np.ndarray] = []
    chunk = max(1, 4_000_000 // max(hours, 1))
    for lo in range(0, len(pc), chunk):
        hi = min(len(pc), lo + chunk)
        c, s = pc[lo:hi], ps[lo:hi]
        a = auto[s][:, None]
        lam = r[lo:hi, None] * (a * cl.on[c] + (1.0 - a) * cl.user[c]) * mask[s]
        tot = lam.sum(axis=1)
        cnt = rng.poisson(tot)
        n = int(cnt.sum())
        if n == 0:
            continue
        cum = np.cumsum(lam.ravel())
        row_before = np.concatenate([[0.0], np.cumsum(tot)[:-1]])
        ev_pair = np.repeat(np.arange(hi - lo), cnt)
        target = row_before[ev_pair] + rng.random(n) * tot[ev_pair]
        cell = np.searchsorted(cum, target, side="right")
        cell = np.clip(cell, ev_pair * hours, ev_pair * hours + hours - 1)
        hour = cell - ev_pair * hours
        ts_parts.append(t0_us + hour * 3_600_000_000 + rng.integers(0, 3_600_000_000, n))
        c_parts.append(c[ev_pair])
        s_parts.append(s[ev_pair])
    # One-off exploration of long-tail sites.
    expl = rng.poisson(0.25 * rate / 0.1 * cl.user * cl.activity[:, None])
    n = int(expl.sum())
    if n:
        cell = np.repeat(np.arange(expl.size), expl.ravel())
        tail = np.cumsum(uni.weight[1:] ** 0.6)
        tail /= tail[-1]
        site = np.minimum(
            np.searchsorted(tail, rng.random(n), side="right") + 1, len(uni.names) - 1
        )
        ts_parts.append(t0_us + (cell % hours) * 3_600_000_000 + rng.integers(0, 3_600_000_000, n))
        c_parts.append(cell // hours)
        s_parts.append(site)
    if not ts_parts:
        return _Events(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    return _Events(np.concatenate(ts_parts), np.concatenate(c_parts), np.concatenate(s_parts))


@dataclass
class _Tables:
    """String tables gathered by integer index (one gather per output column).

    Each table ends with a null entry (index ``-1`` maps there).
    """

    qname: pl.Series
    rdom: pl.Series
    answers: pl.Series
    q_junk: int
    q_typo: int
    q_ptri: int
    q_ptrp: int
    rd_typo: int
    rd_ptri: int
    rd_ptrp: int
    a_start: np.ndarray
    a_var: np.ndarray
    aaaa_start: np.ndarray
    aaaa_var: np.ndarray
    txt: int
    mx: int
    ns: int
    soa: int
    srv: int
    ptri: int
    ptrp: int
    typo_ok: np.ndarray
    n_ptrp: int


def _build_tables(rng: np.random.Generator, uni: _Universe, cl: _Clients) -> _Tables:
    n_sites = len(uni.names)
    n_hosts = len(uni.host_fqdn)
    typos = uni.typos
    pub = rng.integers(int(uni.pool[0]), len(uni.ip4), 4000).tolist()
    pub_ips = [uni.ip4[j] for j in pub]

    def rev(ip: str) -> str:
        return ".".join(reversed(ip.split("."))) + ".in-addr.arpa"

    qname = (
        uni.host_fqdn
        + [f"{h}.{INTERNAL_ZONE}" for h in uni.host_fqdn]
        + typos
        + [f"www.{t}" for t in typos]
        + [rev(ip) for ip in cl.ips]
        + [rev(ip) for ip in pub_ips]
    )
    rdom = (
        uni.host_rd
        + typos
        + ["10.in-addr.arpa"]
        + [ip.split(".", 1)[0] + ".in-addr.arpa" for ip in pub_ips]
    )

    answers: list[str] = []
    a_var = np.where(uni.kind == _KIND_CDN, 8, np.where(uni.pool > 1, 2, 1)).astype(np.int64)
    a_start = np.zeros(n_sites, dtype=np.int64)
    aaaa_start = np.zeros(n_sites, dtype=np.int64)
    aaaa_var = np.minimum(a_var, 2)
    pool, nans, ip0 = uni.pool.tolist(), uni.n_ans.tolist(), uni.ip_start.tolist()
    for s_i in range(n_sites):
        a_start[s_i] = len(answers)
        for v in range(int(a_var[s_i])):
            answers.append(
                ",".join(uni.ip4[ip0[s_i] + (v * 3 + j) % pool[s_i]] for j in range(nans[s_i]))
            )
    for s_i in range(n_sites):
        aaaa_start[s_i] = len(answers)
        for v in range(int(aaaa_var[s_i])):
            k = min(nans[s_i], 2)
            answers.append(",".join(uni.ip6[ip0[s_i] + (v + j) % pool[s_i]] for j in range(k)))
    txt = len(answers)
    for name in uni.names:
        t = f"v=spf1 include:_spf.{name} ~all"
        answers.append(f"TXT {len(t)} {t}")
    mx = len(answers)
    answers.extend(f"mail.{name}" for name in uni.names)
    ns = len(answers)
    answers.extend(f"ns1.{name},ns2.{name}" for name in uni.names)
    soa = len(answers)
    answers.extend(f"ns1.{name}" for name in uni.names)
    srv = len(answers)
    answers.append(f"dc01.{INTERNAL_ZONE},dc02.{INTERNAL_ZONE}")
    ptri = len(answers)
    answers.extend(cl.names)
    ptrp = len(answers)
    answers.extend(f"host-{ip.replace('.', '-')}.isp.example.net" for ip in pub_ips)
    return _Tables(
        qname=pl.Series("qname", [*qname, None], dtype=pl.String),
        rdom=pl.Series("registered_domain", [*rdom, None], dtype=pl.String),
        answers=pl.Series("answers", [*answers, None], dtype=pl.String).str.split(","),
        q_junk=n_hosts,
        q_typo=2 * n_hosts,
        q_ptri=2 * n_hosts + 2 * n_sites,
        q_ptrp=2 * n_hosts + 2 * n_sites + cl.n,
        rd_typo=n_hosts,
        rd_ptri=n_hosts + n_sites,
        rd_ptrp=n_hosts + n_sites + 1,
        a_start=a_start,
        a_var=a_var,
        aaaa_start=aaaa_start,
        aaaa_var=aaaa_var,
        txt=txt,
        mx=mx,
        ns=ns,
        soa=soa,
        srv=srv,
        ptri=ptri,
        ptrp=ptrp,
        typo_ok=np.array([t != "" for t in typos], dtype=bool),
        n_ptrp=len(pub_ips),
    )


def _site_events_frame(
    rng: np.random.Generator,
    uni: _Universe,
    tabs: _Tables,
    ev: _Events,
    campaign: str | None,
    noise: bool,
) -> pl.DataFrame:
    """Turn (ts, client, site) arrays into raw event rows with names and answers.

    All per-event work is integer arithmetic on NumPy arrays; strings come
    from one gather per column out of :class:`_Tables`.
    """
    site0 = ev.site
    # Host choice: skewed towards a site's first host names.
    nh = uni.n_hosts[site0]
    host0 = uni.host_start[site0] + np.minimum(
        (rng.random(len(site0)) ** 2.2 * nh).astype(np.int64), nh - 1
    )
    srv0 = uni.host_srv[host0]
    # Twins: A then AAAA / HTTPS a few ms later (not for SRV or internal names).
    twin_ok = ~srv0 & (uni.kind[site0] != _KIND_INTERNAL)
    n_aaaa = (rng.random(len(site0)) < 0.5) & twin_ok
    n_https = (rng.random(len(site0)) < 0.22) & twin_ok
    reps = 1 + n_aaaa.astype(np.int64) + n_https.astype(np.int64)
    idx = np.repeat(np.arange(len(site0)), reps)
    k = np.arange(len(idx)) - np.repeat(np.cumsum(reps) - reps, reps)
    base_q = rng.choice(
        np.array([_QA, _QAAAA, _QTXT, _QMX, _QNS, _QSOA]),
        size=len(site0),
        p=[0.93, 0.05, 0.008, 0.004, 0.004, 0.004],
    )
    base_q = np.where(srv0, _QSRV, base_q)
    second = np.where(n_aaaa, _QAAAA, _QHTTPS)
    qt = np.where(k == 0, base_q[idx], np.where(k == 1, second[idx], _QHTTPS))
    n = len(idx)
    ts = ev.ts[idx] + np.where(k == 0, 0, rng.integers(200, 40_000, n))
    client = ev.client[idx]
    site = site0[idx]
    host = host0[idx]
    internal = uni.kind[site] == _KIND_INTERNAL
    u = rng.random(n)
    u2 = rng.random(n)
    rc = np.where(uni.host_nx[host], 1, 0)
    if noise:
        # 1: search-suffix junk, 2: typo, 3: PTR internal, 4: PTR public, 5: SERVFAIL, 6: no answer
        bounds = np.cumsum([0.012, 0.003, 0.03, 0.012, 0.002, 0.002])
        conv = np.searchsorted(bounds, u, side="right") + 1
        conv = np.where(conv > 6, 0, conv)
        conv = np.where((conv == 2) & ~tabs.typo_ok[site], 1, conv)
        conv = np.where((conv == 1) & internal, 0, conv)
    else:
        conv = np.zeros(n, dtype=np.int64)
    ptr_c = rng.integers(0, tabs.q_ptrp - tabs.q_ptri, n)
    ptr_p = rng.integers(0, tabs.n_ptrp, n)
    qidx = np.select(
        [conv == 1, conv == 2, conv == 3, conv == 4],
        [tabs.q_junk + host, tabs.q_typo + site + np.where(u2 < 0.5, len(uni.names), 0),
         tabs.q_ptri + ptr_c, tabs.q_ptrp + ptr_p],
        host,
    )  # fmt: skip
    rdidx = np.select(
        [conv == 1, conv == 2, conv == 3, conv == 4],
        [0, tabs.rd_typo + site, tabs.rd_ptri, tabs.rd_ptrp + ptr_p],
        host,
    )
    qt = np.where((conv == 3) | (conv == 4), _QPTR, qt)
    rc = np.select(
        [(conv == 1) | (conv == 2), conv == 3, conv == 4, conv == 5, conv == 6],
        [1, (u2 < 0.2).astype(np.int64), (u2 < 0.45).astype(np.int64), 2, 3],
        rc,
    )
    variant = rng.integers(0, 1 << 30, n)
    a_idx = tabs.a_start[site] + variant % tabs.a_var[site]
    aaaa_idx = np.where(uni.has_v6[site], tabs.aaaa_start[site] + variant % tabs.aaaa_var[site], -1)
    ans = np.select(
        [conv == 3, conv == 4, qt == _QA, qt == _QAAAA, qt == _QTXT, qt == _QMX, qt == _QNS,
         qt == _QSOA, qt == _QSRV],
        [tabs.ptri + ptr_c, tabs.ptrp + ptr_p, a_idx, aaaa_idx, tabs.txt + site, tabs.mx + site,
         tabs.ns + site, tabs.soa + site, tabs.srv],
        -1,
    )  # fmt: skip
    ans = np.where(rc != 0, -1, ans)
    no_answer = ans < 0
    ttl = rng.integers(1, uni.ttl[site] + 1)
    hit = u > 0.3  # cache hits are fast
    rtt = np.where(hit, 200 + u2 * 1500, 4000 + u2**2 * 150_000).astype(np.int64)
    unanswered = rc == 3
    order = np.argsort(ts, kind="stable")
    ts, client, qidx, rdidx, qt, rc, ans, ttl, rtt = (
        np.asarray(x)[order] for x in (ts, client, qidx, rdidx, qt, rc, ans, ttl, rtt)
    )
    no_answer, unanswered = no_answer[order], unanswered[order]
    rc_names = pl.Series([*_RC_NAMES, None], dtype=pl.String)
    qt_names = pl.Series(_QT_NAMES, dtype=pl.String)
    last = len(tabs.answers) - 1
    frame = pl.DataFrame(
        {
            "ts_us": ts.astype(np.int64),
            "client": client.astype(np.int64),
            "qname": tabs.qname.gather(qidx),
            "registered_domain": tabs.rdom.gather(rdidx),
            "qtype": qt_names.gather(qt),
            "rcode": rc_names.gather(rc),
            "answers": tabs.answers.gather(np.where(no_answer, last, ans)),
            "ttl": ttl.astype(np.int64),
            "rtt_us": rtt,
            "_noans": no_answer,
            "_unans": unanswered,
        }
    )
    return frame.select(
        "ts_us",
        "client",
        "qname",
        "registered_domain",
        "qtype",
        "rcode",
        "answers",
        ttl=pl.when(pl.col("_noans")).then(None).otherwise(pl.col("ttl")),
        rtt_us=pl.when(pl.col("_unans")).then(None).otherwise(pl.col("rtt_us")),
        campaign=pl.lit(campaign, dtype=pl.String),
    )


# --------------------------------------------------------------------------- campaigns

_RAW_SCHEMA: dict[str, pl.DataType] = {
    "ts_us": pl.Int64(),
    "client": pl.Int64(),
    "qname": pl.String(),
    "registered_domain": pl.String(),
    "qtype": pl.String(),
    "rcode": pl.String(),
    "answers": pl.List(pl.String()),
    "ttl": pl.Int64(),
    "rtt_us": pl.Int64(),
    "campaign": pl.String(),
}


@dataclass
class _Ctx:
    """State shared by the campaign injectors."""

    rng: np.random.Generator
    uni: _Universe
    tabs: _Tables
    cl: _Clients
    hours: int
    t0_us: int
    warm_s: float
    bg: _Events
    taken_names: set[str]
    taken_sites: set[int]
    free_clients: list[int]
    labels: list[dict[str, str | int]] = field(default_factory=list)
    frames: list[pl.DataFrame] = field(default_factory=list)
    dga_lists: dict[str, list[str]] = field(default_factory=dict)
    splitter: DomainSplitter = field(default_factory=DomainSplitter)

    def reserved(self, kind: str) -> int | None:
        """A never-seen site kept for ``kind`` campaigns (None when all are used)."""
        left = self.uni.reserved.get(kind, [])
        return left.pop(0) if left else None

    def end_us(self) -> int:
        """The end of the simulated period (µs)."""
        return self.t0_us + self.hours * 3_600_000_000

    def window(self, lo_s: float, hi_s: float, office: bool = False) -> tuple[int, int]:
        """A random [start, end) in µs of duration U(lo, hi) after the warm-up.

        ``office`` prefers a start in weekday office hours (08-16 UTC) when the
        simulated period has one (up to 50 draws).
        """
        total = self.hours * 3600.0
        dur = min(float(self.rng.uniform(lo_s, hi_s)), max(60.0, total - self.warm_s))
        dur = min(dur, total)
        for _ in range(50 if office else 1):
            begin = float(self.rng.uniform(min(self.warm_s, total - dur), total - dur))
            when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
                microseconds=self.t0_us + begin * 1e6
            )
            if when.weekday() < 5 and 8 <= when.hour < 16:
                break
        return self.t0_us + int(begin * 1e6), self.t0_us + int((begin + dur) * 1e6)

    def client(self) -> int:
        """A workstation not yet used by a campaign (reused only when none is left)."""
        if not self.free_clients:
            ws = np.flatnonzero(~self.cl.server)
            return int(ws[int(self.rng.integers(len(ws)))]) if len(ws) else 0
        return self.free_clients.pop()

    def new_domain(self, tlds: Sequence[str], style: str = "words") -> str:
        """A registered domain that exists nowhere else in the simulation."""
        while True:
            if style == "letters":
                k = int(self.rng.integers(6, 11))
                lab = bytes(_random_chars(self.rng, 1, k, _LETTERS)[0]).decode()
            else:
                lab = _site_label(self.rng)
            name = f"{lab}.{tlds[int(self.rng.integers(len(tlds)))]}"
            if name not in self.taken_names:
                self.taken_names.add(name)
                return name

    def add(self, frame: pl.DataFrame, kind: str, rows: list[tuple[str, str, str, str]]) -> None:
        """Record a campaign's events and its label rows (entity_type, entity, family, text).

        ``threat`` is 0 for the ``benign_*`` kinds and 1 for attacks.
        """
        if frame.height == 0:
            return
        ts = frame["ts_us"].to_numpy()
        ws = int(ts.min()) // 1_000_000 * 1_000_000
        we = int(ts.max()) // 1_000_000 * 1_000_000 + 1_000_000
        self.frames.append(frame)
        camp = str(frame["campaign"][0])
        for etype, entity, family, text in rows:
            self.labels.append(
                {
                    "kind": kind,
                    "entity_type": etype,
                    "entity": entity,
                    "window_start": _iso(ws),
                    "window_end": _iso(we),
                    "detector_family": family,
                    "description": text,
                    "campaign": camp,
                    "threat": 0 if kind.startswith("benign_") else 1,
                }
            )


def _raw_frame(data: dict[str, object], n: int, campaign: str) -> pl.DataFrame:
    cols: dict[str, object] = {k: data.get(k) for k in _RAW_SCHEMA if k != "campaign"}
    for k, v in cols.items():
        if v is None:
            cols[k] = pl.Series(k, [None] * n, dtype=_RAW_SCHEMA[k])
        elif isinstance(v, str):
            dtype = pl.String if k == "answers" else _RAW_SCHEMA[k]
            cols[k] = pl.Series(k, [v] * n, dtype=dtype)
    ans = cols["answers"]
    if isinstance(ans, pl.Series) and ans.dtype == pl.String:
        cols["answers"] = ans.str.split(",")
    cols["campaign"] = pl.Series("campaign", [campaign] * n, dtype=pl.String)
    return pl.DataFrame(cols, schema=_RAW_SCHEMA).sort("ts_us", maintain_order=True)


def _site_visitors(ctx: _Ctx) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per site: distinct background clients, event count, first event time (µs)."""
    n_sites = len(ctx.uni.names)
    key = np.unique(ctx.bg.site * ctx.cl.n + ctx.bg.client)
    visitors = np.bincount(key // ctx.cl.n, minlength=n_sites)
    count = np.bincount(ctx.bg.site, minlength=n_sites)
    first = np.full(n_sites, np.iinfo(np.int64).max)
    np.minimum.at(first, ctx.bg.site, ctx.bg.ts)
    return visitors, count, first


def _inject_masquerade(ctx: _Ctx, i: int, stats: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    rng, uni = ctx.rng, ctx.uni
    visitors, _count, first = stats
    lo, hi = ctx.window(2 * 3600, 6 * 3600, office=True)
    cand = np.flatnonzero(
        uni.generated & uni.site_ok & (visitors >= 1) & (visitors <= 3) & (first < lo)
    )
    cand = np.array([c for c in cand.tolist() if c not in ctx.taken_sites], dtype=np.int64)
    if len(cand) == 0:
        return
    site = int(cand[int(rng.integers(len(cand)))])
    ctx.taken_sites.add(site)
    seen = np.unique(ctx.bg.client[ctx.bg.site == site])
    pool = np.setdiff1d(np.flatnonzero(~ctx.cl.server), seen)
    if len(pool) == 0:
        return
    k = min(len(pool), max(3, round(ctx.cl.n * float(rng.uniform(0.03, 0.08)))))
    victims = rng.choice(pool, size=k, replace=False)
    per = rng.integers(1, 5, k)
    c = np.repeat(victims, per)
    arrive = lo + (rng.beta(1.0, 2.5, k) * (hi - lo - 150e6)).astype(np.int64)
    ts = np.repeat(arrive, per) + rng.integers(0, 120_000_000, len(c))
    camp = f"masquerade-{i:02d}"
    ev = _Events(ts.astype(np.int64), c.astype(np.int64), np.full(len(c), site, dtype=np.int64))
    frame = _site_events_frame(rng, uni, ctx.tabs, ev, camp, noise=False)
    name = uni.names[site]
    ctx.add(
        frame,
        "masquerade",
        [
            (
                "domain",
                name,
                "visitors",
                f"quiet site ({int(visitors[site])} usual visitor(s)) visited by {k} new clients",
            ),
            (
                "domain",
                name,
                "volume",
                f"quiet site: {len(c)} visits from {k} new clients in a few hours",
            ),
        ],
    )


def _inject_volume(ctx: _Ctx, i: int, stats: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    rng, uni = ctx.rng, ctx.uni
    visitors, count, _first = stats
    mean_h = count / max(ctx.hours, 1)
    lo, hi = ctx.window(2 * 3600, 6 * 3600)
    cand = np.flatnonzero(
        (uni.kind == _KIND_WEB)
        & uni.site_ok
        & (visitors >= 3)
        & (mean_h >= 0.3)
        & (mean_h <= 30)
        & (uni.active_q >= 1.0)
    )
    cand = np.array([c for c in cand.tolist() if c not in ctx.taken_sites], dtype=np.int64)
    if len(cand) == 0:
        return
    site = int(cand[int(rng.integers(len(cand)))])
    ctx.taken_sites.add(site)
    # Several sizes: about 3x, 8x and 25x the site's busy-hour level.
    factor = float((3.0, 8.0, 25.0)[i % 3] * rng.uniform(0.85, 1.2))
    # The jump is relative to the site's busy-hour level: the 90th percentile of
    # its hours with traffic (not its mean over all hours, which for an
    # intermittent site is far below what a normal active hour looks like).
    busy_hours = np.unique(ctx.bg.ts[ctx.bg.site == site] // 3_600_000_000, return_counts=True)[1]
    busy = float(np.percentile(busy_hours, 90)) if len(busy_hours) else 0.0
    per_hour = (factor - 1.0) * max(busy, 2.0 * float(mean_h[site]), 1.5)
    n = int(rng.poisson(per_hour * (hi - lo) / 3.6e9))
    usual = np.unique(ctx.bg.client[ctx.bg.site == site])
    others = np.flatnonzero(~ctx.cl.server)
    c = np.where(rng.random(n) < 0.7, rng.choice(usual, n), rng.choice(others, n))
    ts = rng.integers(lo, hi, n)
    camp = f"volume_spike-{i:02d}"
    frame = _site_events_frame(
        rng, uni, ctx.tabs, _Events(ts, c, np.full(n, site)), camp, noise=False
    )
    ctx.add(
        frame,
        "volume_spike",
        [("domain", uni.names[site], "volume", f"hourly volume x{factor:.0f} ({n} extra queries)")],
    )


# Extra dictionary words for word-pair DGAs (suppobox/matsnu draw from their own lists).
_DGA_WORDS: tuple[str, ...] = (
    *WORDS,
    "about", "above", "across", "action", "answer", "before", "behind", "better", "border",
    "bottom", "branch", "breath", "bring", "broken", "butter", "cannot", "carry", "caught",
    "center", "chance", "change", "charge", "choose", "circle", "common", "corner", "cotton",
    "country", "course", "danger", "decide", "degree", "depend", "direct", "doctor", "during",
    "either", "enough", "except", "expect", "family", "father", "figure", "finger", "finish",
    "follow", "forget", "format", "former", "gather", "gentle", "handle", "happen", "heavy",
    "hunger", "impact", "inside", "island", "kitten", "labour", "ladder", "leader", "listen",
    "little", "longer", "machine", "manner", "matter", "member", "middle", "minute", "modern",
    "moment", "mother", "motion", "muscle", "narrow", "nation", "nature", "nearly", "needle",
    "notice", "number", "object", "office", "orange", "period", "person", "plenty", "pocket",
    "powder", "public", "rabbit", "reason", "record", "remain", "repeat", "result", "return",
    "saddle", "season", "second", "settle", "shadow", "should", "silent", "simple", "single",
    "sister", "social", "spirit", "spread", "square", "stream", "street", "strong", "sudden",
    "supply", "symbol", "system", "temper", "thirty", "though", "thread", "ticket", "travel",
    "twenty", "unless", "valley", "vessel", "visit", "wonder", "yellow", "window", "winter",
)  # fmt: skip

# TLD pools by DGA style; each campaign draws 1-4 of its style's pool.
_DGA_STYLE_TLDS: dict[str, tuple[str, ...]] = {
    "hash": ("com", "net", "org", "info", "biz", "ru", "cn", "in"),
    "letters": ("com", "net", "org", "info", "biz", "ru", "top", "xyz", "cc", "ws", "cn"),
    "pronounceable": ("com", "net", "org", "info", "biz", "ru", "su", "in", "co"),
    "wordpair": ("com", "net", "org", "info", "biz", "ru"),
    "short": ("cc", "ws", "tk", "su", "ru", "pw", "cn", "biz", "info", "top", "xyz", "eu"),
}
_CONSONANTS = np.frombuffer(b"bcdfghjklmnpqrstvwxz", np.uint8)
_VOWELS_B = np.frombuffer(b"aeiouy", np.uint8)
_ALNUM = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789", np.uint8)


def dga_style_names(
    rng: np.random.Generator, n: int, style: str, family_seed: int | None = None
) -> list[str]:
    """``n`` names from a reimplemented DGA generator of lexical ``style``.

    Styles (:data:`DGA_STYLES`), each like a family of the public DGA lists:

    ``hash``           16-32 hex or base32 characters (bamital-like hash names)
    ``letters``        8-20 uniformly random letters (conficker/cryptolocker-like)
    ``pronounceable``  alternating consonants and vowels, 6-14 letters (pykspa/necurs-like)
    ``wordpair``       two or three dictionary words, sometimes hyphenated (suppobox/matsnu-like)
    ``short``          4-6 letters and digits (short-label generators)

    A family's fixed traits (its 1-4 TLDs from the style's pool, hash length
    and alphabet, word separator) come from ``family_seed``: calls with the
    same ``family_seed`` give names of one family (by default they are drawn
    from ``rng``).

    >>> a = dga_style_names(np.random.default_rng(0), 50, "hash", family_seed=3)
    >>> b = dga_style_names(np.random.default_rng(1), 50, "hash", family_seed=3)
    >>> {len(x.split(".")[0]) for x in a + b}.__len__(), a[0] != b[0]
    (1, True)
    """
    if style not in DGA_STYLES:
        raise ValueError(f"unknown DGA style {style!r}; choose one of {', '.join(DGA_STYLES)}")
    fam = rng if family_seed is None else np.random.default_rng([family_seed, 0xD6A])
    pool = _DGA_STYLE_TLDS[style]
    k_tld = int(fam.integers(1, 5))
    tlds = [pool[j] for j in fam.permutation(len(pool))[:k_tld].tolist()]
    sep = "-" if fam.random() < 0.3 else ""
    parity = int(fam.integers(2))
    hash_len = int(fam.choice([16, 20, 24, 32]))
    hash_alpha = _HEX if fam.random() < 0.6 else _B32
    tld = np.array(tlds, dtype=object)[rng.integers(0, len(tlds), n)]
    if style == "wordpair":
        nw = rng.integers(2, 4, n)
        w = rng.integers(0, len(_DGA_WORDS), (n, 3)).tolist()
        labels = [
            sep.join(_DGA_WORDS[j] for j in row[:k]) for row, k in zip(w, nw.tolist(), strict=True)
        ]
    elif style == "pronounceable":
        width = 14
        cons = _random_chars(rng, n, width, _CONSONANTS)
        vows = _random_chars(rng, n, width, _VOWELS_B)
        mat = np.where(np.arange(width)[None, :] % 2 == parity, cons, vows)
        lens = rng.integers(6, width + 1, n).tolist()
        labels = [bytes(row[:k]).decode() for row, k in zip(mat, lens, strict=True)]
    else:
        lo, hi, alphabet = {
            "hash": (hash_len, hash_len, hash_alpha),
            "letters": (8, 20, _LETTERS),
            "short": (4, 6, _ALNUM),
        }[style]
        mat = _random_chars(rng, n, hi, alphabet)
        if style == "short":
            mat[:, 0] = _LETTERS[mat[:, 0] % 26]  # a label starting with a letter
        lens = rng.integers(lo, hi + 1, n).tolist()
        labels = [bytes(row[:k]).decode() for row, k in zip(mat, lens, strict=True)]
    return [f"{lab}.{t}" for lab, t in zip(labels, tld.tolist(), strict=True)]


def _canonical_family(name: str) -> str:
    """Family names as the DGA model's training canonicalises them (``new_goz`` → ``newgoz``)."""
    return name.strip().lower().replace("new_goz", "newgoz")


def read_dga_lists(
    sources: str | Path | Sequence[str | Path], families: Sequence[str] | None = None
) -> dict[str, list[str]]:
    """Real DGA names by family from CSV files (``family,domain``) or directories of them.

    Names are lower-cased, stripped of a trailing dot and de-duplicated;
    rows without a dot, or with characters other than letters, digits, ``-``
    and ``.``, are skipped.  ``families`` keeps only those families
    (canonical names: lower case, ``new_goz`` read as ``newgoz``), as a
    leave-family-out evaluation needs.  Raises ``ValueError`` when a file
    has no ``domain`` column or nothing is left.
    """
    items = [sources] if isinstance(sources, str | Path) else list(sources)
    files: list[Path] = []
    for item in items:
        path = Path(item)
        files.extend(sorted(path.glob("*.csv")) if path.is_dir() else [path])
    if not files:
        raise ValueError("no DGA list files given")
    parts = []
    for f in files:
        df = pl.read_csv(f, infer_schema_length=0)
        cols = {c.strip().lower(): c for c in df.columns}
        if "domain" not in cols:
            raise ValueError(f"{f}: no 'domain' column (expected family,domain)")
        fam = pl.col(cols["family"]) if "family" in cols else pl.lit(f.stem)
        parts.append(df.select(family=fam.cast(pl.String), domain=pl.col(cols["domain"])))
    names = (
        pl.concat(parts)
        .drop_nulls()
        .with_columns(
            pl.col("family")
            .str.strip_chars()
            .str.to_lowercase()
            .str.replace_all("new_goz", "newgoz", literal=True),
            pl.col("domain").str.strip_chars().str.to_lowercase().str.strip_chars_end("."),
        )
        .filter(pl.col("domain").str.contains(r"^[a-z0-9-]+(\.[a-z0-9-]+)+$"))
        .unique(["family", "domain"], maintain_order=True)
    )
    if families is not None:
        wanted = {_canonical_family(f) for f in families}
        names = names.filter(pl.col("family").is_in(sorted(wanted)))
    out: dict[str, list[str]] = {}
    for fam, dom in zip(names["family"].to_list(), names["domain"].to_list(), strict=True):
        out.setdefault(fam, []).append(dom)
    if not out:
        raise ValueError("no DGA names left after reading and filtering the lists")
    return dict(sorted(out.items()))


def _inject_dga(ctx: _Ctx, i: int, style_offset: int) -> None:
    """1-3 bots of one DGA family query a day's list of its names in bursts every 1-3 h.

    The family is a real one from ``ctx.dga_lists`` when lists were given
    (campaign ``i`` takes the ``i``-th family, cycling, after a seeded
    offset), else a reimplemented generator of style ``DGA_STYLES[i + offset]``.
    """
    rng = ctx.rng
    if ctx.dga_lists:
        fams = list(ctx.dga_lists)
        family = fams[(i + style_offset) % len(fams)]
        pool = [n for n in ctx.dga_lists[family] if n not in ctx.taken_names]
        if not pool:
            return
        desc = f"{family} DGA (real family list)"
    else:
        family = DGA_STYLES[(i + style_offset) % len(DGA_STYLES)]
        pool = []
        family_seed = int(rng.integers(1 << 31))
        desc = f"{family}-style DGA (generated)"
    lo, hi = ctx.window(6 * 3600, 36 * 3600)
    bots = sorted({ctx.client() for _ in range(int(rng.integers(1, 4)))})
    day_us = 86_400_000_000
    lists: dict[int, tuple[list[str], int]] = {}
    ts_l: list[np.ndarray] = []
    c_l: list[np.ndarray] = []
    q_l: list[str] = []
    for bot in bots:
        t = lo + int(rng.integers(0, 3_600_000_000))
        while t < hi:
            day = (t - ctx.t0_us) // day_us
            if day not in lists:
                want = int(rng.integers(300, 800))
                if pool:
                    pick = rng.permutation(len(pool))[:want].tolist()
                    names = [pool[j] for j in pick]
                else:
                    names = [
                        n
                        for n in dga_style_names(rng, want, family, family_seed)
                        if n not in ctx.taken_names
                    ]
                if not names:
                    break
                lists[day] = (names, int(rng.integers(len(names) // 4, len(names))))
            names, live = lists[day]
            k = min(int(rng.integers(40, 200)), live + 1)
            gaps = rng.integers(100_000, 1_500_000, k)
            times = t + np.cumsum(gaps)
            keep = times < hi
            ts_l.append(times[keep])
            c_l.append(np.full(int(keep.sum()), bot))
            q_l.extend(names[j] for j in np.flatnonzero(keep).tolist())
            t += int(rng.integers(3_600_000_000, 3 * 3_600_000_000))
    if not q_l:
        return
    ts = np.concatenate(ts_l)
    live_names = {lst[lv] for lst, lv in lists.values() if lv < len(lst)}
    qn = pl.Series(q_l, dtype=pl.String)
    rdom = ctx.splitter.split_series(qn)["registered_domain"]
    is_live = qn.is_in(list(live_names)).to_numpy()
    n = len(q_l)
    a, b, c = rng.integers(1, 255, 3).tolist()
    ip = f"185.{a}.{b}.{c}"
    camp = f"dga-{i:02d}"
    frame = _raw_frame(
        {
            "ts_us": ts,
            "client": np.concatenate(c_l),
            "qname": qn,
            "registered_domain": rdom,
            "qtype": "A",
            "rcode": pl.Series(["NOERROR" if x else "NXDOMAIN" for x in is_live.tolist()]),
            "answers": pl.Series([ip if x else None for x in is_live.tolist()], dtype=pl.String),
            "ttl": pl.Series([300 if x else None for x in is_live.tolist()], dtype=pl.Int64),
            "rtt_us": rng.integers(8_000, 180_000, n),
        },
        n,
        camp,
    )
    ctx.taken_names.update(q_l)
    ctx.taken_names.update(rdom.to_list())
    desc += ", bursts of NXDOMAIN every 1-3 h"
    rows = []
    for b in bots:
        rows.append(("client", ctx.cl.ips[b], "dga_host", f"{desc} from an infected host"))
        rows.append(("client", ctx.cl.ips[b], "nxdomain", f"{desc} from an infected host"))
    rows += [("domain", d, "dga", f"{family} DGA name") for d in dict.fromkeys(rdom.to_list())]
    ctx.add(frame, "dga", rows)


def _encoded(
    rng: np.random.Generator, n: int, lo: int, hi: int, alphabet: np.ndarray, label: int
) -> pl.Series:
    """n encoded strings of length U(lo, hi), split into labels of at most ``label`` chars."""
    mat = _random_chars(rng, n, hi, alphabet)
    full = _fixed_strings(mat)
    lens = pl.Series(rng.integers(lo, hi + 1, n))
    df = pl.DataFrame({"s": full, "n": lens})
    parts = []
    for k in range(0, hi, label):
        piece = pl.col("s").str.slice(k, pl.min_horizontal(pl.lit(label), pl.col("n") - k).clip(0))
        parts.append(pl.when(pl.col("n") > k).then(piece).otherwise(None))
    return df.select(pl.concat_str(parts, separator=".", ignore_nulls=True)).to_series()


def _inject_tunnel(ctx: _Ctx, i: int) -> None:
    rng = ctx.rng
    lo, hi = ctx.window(3600, 4 * 3600)
    rate = float(rng.uniform(0.5, 2.0))
    n = max(20, int(rng.poisson(rate * (hi - lo) / 1e6)))
    ts = np.sort(rng.integers(lo, hi, n))
    client = ctx.client()
    domain = ctx.new_domain(("com", "net", "io", "xyz"))
    iodine = bool(rng.random() < 0.5)
    alphabet, tool = (_B32, "iodine-like base32") if iodine else (_HEX, "dnscat2-like hex")
    data = _encoded(rng, n, 40, 180, alphabet, 63 if iodine else 60)
    qname = data + "." + domain
    types = ("NULL", "TXT", "CNAME", "A") if iodine else ("TXT", "CNAME", "MX", "A")
    probs = (0.6, 0.2, 0.1, 0.1) if iodine else (0.45, 0.3, 0.15, 0.1)
    qt = np.array(types)[rng.choice(4, size=n, p=probs)]
    txt = _fixed_strings(_random_chars(rng, n, 220, _B64)).str.slice(
        0, pl.Series(rng.integers(100, 221, n))
    )
    reply = _encoded(rng, n, 20, 120, alphabet, 63) + "." + domain
    ipv4 = pl.Series([f"10.{a}.{b}.{c}" for a, b, c in rng.integers(0, 255, (n, 3)).tolist()])
    df = pl.DataFrame({"qt": qt, "txt": txt, "reply": reply, "ip": ipv4})
    answers = df.select(
        pl.when(pl.col("qt") == "TXT")
        .then(
            pl.concat_str(
                pl.lit("TXT "),
                pl.col("txt").str.len_bytes().cast(pl.String),
                pl.lit(" "),
                pl.col("txt"),
            )
        )
        .when(pl.col("qt").is_in(["CNAME", "MX"]))
        .then(pl.col("reply"))
        .when(pl.col("qt") == "A")
        .then(pl.col("ip"))
        .otherwise(None)
    ).to_series()
    camp = f"tunnel-{i:02d}"
    frame = _raw_frame(
        {
            "ts_us": ts,
            "client": np.full(n, client),
            "qname": qname,
            "registered_domain": domain,
            "qtype": pl.Series(qt.tolist(), dtype=pl.String),
            "rcode": "NOERROR",
            "answers": answers,
            "ttl": pl.Series(
                [None if x else 0 for x in answers.is_null().to_list()], dtype=pl.Int64
            ),
            "rtt_us": rng.integers(20_000, 120_000, n),
        },
        n,
        camp,
    )
    ctx.add(
        frame,
        "tunnel",
        [("domain", domain, "tunnel", f"{tool} tunnel, {n} queries from {ctx.cl.ips[client]}")],
    )


def _inject_beacon(ctx: _Ctx, i: int) -> None:
    rng = ctx.rng
    # Periods from a minute to an hour (log-uniform: low-and-slow beacons are
    # as common as chatty ones), jitter up to 30 %, long enough for 20+ beats.
    interval = float(np.exp(rng.uniform(np.log(60), np.log(3600))))
    jitter = float(rng.uniform(0.0, 0.3))
    lo, hi = ctx.window(max(12 * 3600, 20 * interval), max(48 * 3600, 30 * interval))
    n_max = int((hi - lo) / (interval * 1e6 * (1 - jitter))) + 2
    gaps = interval * 1e6 * (1 + rng.uniform(-jitter, jitter, n_max))
    ts = lo + np.cumsum(gaps).astype(np.int64)
    ts = ts[ts < hi]
    n = len(ts)
    if n < 3:
        return
    client = ctx.client()
    domain = ctx.new_domain(_C2_TLDS, "letters" if rng.random() < 0.4 else "words")
    prefix = ("", "api.", "cdn.", "update.", "status.")[int(rng.integers(5))]
    a, b, c = rng.integers(1, 255, 3).tolist()
    camp = f"beacon-{i:02d}"
    frame = _raw_frame(
        {
            "ts_us": ts,
            "client": np.full(n, client),
            "qname": prefix + domain,
            "registered_domain": domain,
            "qtype": "A",
            "rcode": "NOERROR",
            "answers": f"45.{a}.{b}.{c}",
            "ttl": pl.Series(np.full(n, 30)),
            "rtt_us": rng.integers(15_000, 80_000, n),
        },
        n,
        camp,
    )
    entity = f"{ctx.cl.ips[client]}|{domain}"
    ctx.add(
        frame,
        "beacon",
        [
            (
                "client_domain",
                entity,
                "beacon",
                f"C2 beacon every {interval:.0f} s (jitter {jitter:.0%})",
            )
        ],
    )


def _inject_exfil(ctx: _Ctx, i: int) -> None:
    rng = ctx.rng
    lo, hi = ctx.window(24 * 3600, 96 * 3600)
    mean_gap = float(rng.uniform(120, 600))
    n_max = int((hi - lo) / (mean_gap * 1e6) * 1.5) + 10
    ts = lo + np.cumsum(rng.exponential(mean_gap * 1e6, n_max)).astype(np.int64)
    ts = ts[ts < hi]
    n = len(ts)
    if n < 3:
        return
    client = ctx.client()
    domain = ctx.new_domain(("com", "net", "org", "info"))
    hexy = bool(rng.random() < 0.5)
    data = _encoded(rng, n, 24, 48, _HEX if hexy else _B32, 63)
    seq = pl.Series(np.arange(n)).cast(pl.String)
    qname = (
        pl.DataFrame({"d": data, "s": seq})
        .select(pl.concat_str(pl.col("d"), pl.lit("."), pl.col("s"), pl.lit("." + domain)))
        .to_series()
    )
    nx = bool(rng.random() < 0.5)
    camp = f"exfil-{i:02d}"
    frame = _raw_frame(
        {
            "ts_us": ts,
            "client": np.full(n, client),
            "qname": qname,
            "registered_domain": domain,
            "qtype": pl.Series(np.where(rng.random(n) < 0.7, "A", "TXT").tolist(), dtype=pl.String),
            "rcode": "NXDOMAIN" if nx else "NOERROR",
            "answers": None if nx else "127.0.0.1",
            "ttl": None if nx else pl.Series(np.zeros(n, dtype=np.int64)),
            "rtt_us": rng.integers(20_000, 150_000, n),
        },
        n,
        camp,
    )
    ctx.add(
        frame,
        "exfil",
        [
            (
                "domain",
                domain,
                "exfil",
                f"slow {'hex' if hexy else 'base32'} exfiltration, one query per ~{mean_gap / 60:.0f} min",
            )
        ],
    )


_HOUR_US = 3_600_000_000


def _sporadic(
    ctx: _Ctx, who: np.ndarray, onset: np.ndarray, until: int, rate: np.ndarray, on_share: float
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson queries of hosts ``who`` from their ``onset`` (µs) until ``until``.

    Each host queries at ``rate[j]`` per hour times its activity that hour:
    ``on_share`` × machine on + (1 − ``on_share``) × user present (diurnal).
    Returns (times in µs, position in ``who``), vectorised over hosts × hours.
    """
    if len(who) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    h0 = max(0, int((int(onset.min()) - ctx.t0_us) // _HOUR_US))
    h1 = min(ctx.hours, int((until - ctx.t0_us) // _HOUR_US) + 1)
    if h1 <= h0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    hrs = np.arange(h0, h1)
    act = on_share * ctx.cl.on[np.ix_(who, hrs)] + (1.0 - on_share) * ctx.cl.user[np.ix_(who, hrs)]
    cnt = ctx.rng.poisson(rate[:, None] * act)
    cell = np.repeat(np.arange(cnt.size), cnt.ravel())
    host = cell // len(hrs)
    ts = ctx.t0_us + hrs[cell % len(hrs)] * _HOUR_US + ctx.rng.integers(0, _HOUR_US, len(cell))
    keep = (ts >= onset[host]) & (ts < until)
    return ts[keep].astype(np.int64), host[keep].astype(np.int64)


def _adopters(ctx: _Ctx, share_lo: float, share_hi: float, k_min: int, k_max: int) -> np.ndarray:
    """A share of the workstations (at least ``k_min``, at most ``k_max``), drawn at random."""
    ws = np.flatnonzero(~ctx.cl.server)
    share = float(ctx.rng.uniform(share_lo, share_hi))
    k = min(len(ws), int(np.clip(round(ctx.cl.n * share), k_min, k_max)))
    return np.sort(ctx.rng.choice(ws, size=k, replace=False)) if k else ws[:0]


def _site_campaign(
    ctx: _Ctx, site: int, ts: np.ndarray, clients: np.ndarray, camp: str
) -> pl.DataFrame:
    """Events of ``clients`` visiting ``site`` at ``ts``: real host names and answers.

    Times outside the simulated period are dropped.
    """
    inside = (ts >= ctx.t0_us) & (ts < ctx.end_us() - 60_000_000)
    ts, clients = ts[inside], clients[inside]
    order = np.argsort(ts, kind="stable")
    ev = _Events(ts[order], clients[order], np.full(len(ts), site, dtype=np.int64))
    return _site_events_frame(ctx.rng, ctx.uni, ctx.tabs, ev, camp, noise=False)


def _inject_newdomain(ctx: _Ctx, i: int) -> None:
    """A never-seen domain that 3-30 hosts start to query within hours (phishing/Emotet-like).

    Each victim's first contact (1-4 queries in two minutes) falls within
    1-4 h of the campaign start; afterwards it keeps checking in
    sporadically (0.05-0.5 queries per hour of machine time) for 1-3 days.
    """
    rng = ctx.rng
    site = ctx.reserved("newdomain")
    if site is None:
        return
    lo, hi = ctx.window(24 * 3600, 72 * 3600, office=True)
    victims = _adopters(ctx, 0.004, 0.012, 3, 30)
    k = len(victims)
    if k == 0:
        return
    spread = float(rng.uniform(1.0, 4.0)) * _HOUR_US
    first = lo + (rng.beta(1.0, 1.8, k) * spread).astype(np.int64)
    per = rng.integers(1, 5, k)
    ts1 = np.repeat(first, per) + rng.integers(0, 120_000_000, int(per.sum()))
    c1 = np.repeat(victims, per)
    ts2, j2 = _sporadic(ctx, victims, first + 120_000_000, hi, rng.uniform(0.05, 0.5, k), 0.7)
    ts = np.concatenate([ts1, ts2])
    cli = np.concatenate([c1, victims[j2]])
    keep = ts < ctx.end_us()
    frame = _site_campaign(ctx, site, ts[keep], cli[keep], f"newdomain-{i:02d}")
    name = ctx.uni.names[site]
    ctx.add(
        frame,
        "newdomain",
        [
            (
                "domain",
                name,
                "newdomain",
                f"never-seen domain: {k} hosts began querying it within "
                f"{spread / _HOUR_US:.1f} h, then sporadically",
            )
        ],
    )


def _inject_adoption(ctx: _Ctx, i: int) -> None:
    """Benign: a new SaaS domain that dozens of hosts adopt over hours to days and keep using."""
    rng = ctx.rng
    site = ctx.reserved("benign_adoption")
    if site is None:
        return
    lo = ctx.window(3600, 2 * 3600, office=True)[0]
    users = _adopters(ctx, 0.03, 0.12, 12, 600)
    k = len(users)
    if k == 0:
        return
    # The rollout ends well before the simulation does (every adopter shows up).
    rollout = min(float(rng.uniform(2.0, 48.0)) * _HOUR_US, 0.5 * (ctx.end_us() - lo))
    onset = lo + (rng.beta(1.0, 1.5, k) * rollout).astype(np.int64)
    rate = rng.lognormal(np.log(0.8), 0.6, k)
    ts, j = _sporadic(ctx, users, onset, ctx.end_us(), rate, 0.15)
    ts = np.concatenate([onset, ts])
    cli = np.concatenate([users, users[j]])
    frame = _site_campaign(ctx, site, ts, cli, f"benign_adoption-{i:02d}")
    ctx.add(
        frame,
        "benign_adoption",
        [
            (
                "domain",
                ctx.uni.names[site],
                "newdomain",
                f"new SaaS service adopted by {k} hosts over {rollout / _HOUR_US:.0f} h and kept",
            )
        ],
    )


def _inject_cdn(ctx: _Ctx, i: int) -> None:
    """Benign: a new CDN (many host names, low TTLs, rotating answers) used by many hosts at once."""
    rng = ctx.rng
    site = ctx.reserved("benign_cdn")
    if site is None:
        return
    lo = ctx.window(3600, 2 * 3600, office=True)[0]
    users = _adopters(ctx, 0.05, 0.2, 10, 2000)
    k = len(users)
    if k == 0:
        return
    rollout = min(float(rng.uniform(0.5, 6.0)) * _HOUR_US, 0.5 * (ctx.end_us() - lo))
    onset = lo + (rng.beta(1.0, 2.0, k) * rollout).astype(np.int64)
    rate = rng.lognormal(np.log(0.6), 0.5, k)
    ts, j = _sporadic(ctx, users, onset, ctx.end_us(), rate, 0.4)
    ts = np.concatenate([onset, ts])
    cli = np.concatenate([users, users[j]])
    frame = _site_campaign(ctx, site, ts, cli, f"benign_cdn-{i:02d}")
    name = ctx.uni.names[site]
    text = (
        f"new CDN: {int(ctx.uni.n_hosts[site])} host names, TTL <= {int(ctx.uni.ttl[site])} s, "
        f"{int(ctx.uni.pool[site])} addresses, used by {k} hosts"
    )
    ctx.add(
        frame,
        "benign_cdn",
        [("domain", name, "fastflux", text), ("domain", name, "newdomain", text)],
    )


def _inject_update_burst(
    ctx: _Ctx, i: int, stats: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> None:
    """Benign: many hosts hit one vendor domain within an hour (software update or backup)."""
    rng, uni = ctx.rng, ctx.uni
    visitors, _count, _first = stats
    backup = bool(i % 2 == 1)
    lo, hi = ctx.window(20 * 60, 90 * 60, office=not backup)
    if backup:  # backups run at night: move the burst to 00-05 UTC of its day when possible
        day0 = lo - (lo - ctx.t0_us) % (24 * _HOUR_US) + int(rng.uniform(0, 5)) * _HOUR_US
        if day0 >= ctx.t0_us + int(ctx.warm_s * 1e6) and day0 + (hi - lo) <= ctx.end_us():
            lo, hi = day0, day0 + (hi - lo)
    mand = {uni.index[m] for m in _MANDATORY if m in uni.index}
    cand = [
        int(c)
        for c in np.flatnonzero(
            ((uni.kind == _KIND_AUTO) | ((uni.kind == _KIND_WEB) & ~uni.generated))
            & uni.site_ok
            & (visitors >= 1)
        ).tolist()
        if c not in ctx.taken_sites and c not in mand
    ]
    if not cand:
        return
    auto = [c for c in cand if uni.kind[c] == _KIND_AUTO]
    pick = auto or cand
    site = pick[int(rng.integers(len(pick)))]
    ctx.taken_sites.add(site)
    hour = min(ctx.hours - 1, int((lo - ctx.t0_us) // _HOUR_US))
    on = np.flatnonzero(ctx.cl.on[:, hour] > 0) if backup else np.flatnonzero(~ctx.cl.server)
    if len(on) == 0:
        on = np.arange(ctx.cl.n)
    share = float(rng.uniform(0.2, 0.6))
    k = min(len(on), max(10, round(len(on) * share)))
    hosts = rng.choice(on, size=k, replace=False)
    per = rng.integers(1, 7, k)
    cli = np.repeat(hosts, per)
    ts = rng.integers(lo, hi, len(cli))
    frame = _site_campaign(ctx, site, ts, cli, f"benign_update_burst-{i:02d}")
    what = "nightly backup" if backup else "software update"
    text = f"{what}: {k} hosts, {len(cli)} queries in {(hi - lo) / 6e7:.0f} min"
    name = uni.names[site]
    ctx.add(
        frame,
        "benign_update_burst",
        [("domain", name, "volume", text), ("domain", name, "visitors", text)],
    )


def _inject_nx_misconfig(ctx: _Ctx, i: int) -> None:
    """Benign: a misconfigured host retries a few stale internal names (NXDOMAIN) for hours."""
    rng = ctx.rng
    lo, hi = ctx.window(2 * 3600, 24 * 3600)
    client = ctx.client()
    k = int(rng.integers(1, 7))
    names = []
    for _ in range(k):
        w = WORDS[int(rng.integers(len(WORDS)))]
        tail = ("-old", "-legacy", f"{int(rng.integers(1, 20)):02d}", "-test", "-bak")
        names.append(f"{w}{tail[int(rng.integers(len(tail)))]}.{INTERNAL_ZONE}")
    names = list(dict.fromkeys(names))
    period = float(rng.uniform(5 * 60, 30 * 60)) * 1e6
    starts = lo + np.arange(0, max(1, int((hi - lo) // period))) * int(period)
    per_burst = len(names) * int(rng.integers(1, 4))
    ts = np.repeat(starts, per_burst) + rng.integers(0, 5_000_000, len(starts) * per_burst)
    q = np.tile(np.arange(per_burst) % len(names), len(starts))
    n = len(ts)
    order = np.argsort(ts, kind="stable")
    qn = pl.Series(names, dtype=pl.String).gather(q[order])
    frame = _raw_frame(
        {
            "ts_us": ts[order],
            "client": np.full(n, client),
            "qname": qn,
            "registered_domain": INTERNAL_ZONE,
            "qtype": pl.Series(np.where(rng.random(n) < 0.7, "A", "AAAA").tolist()),
            "rcode": "NXDOMAIN",
            "answers": None,
            "ttl": None,
            "rtt_us": rng.integers(300, 3_000, n),
        },
        n,
        f"benign_nx_misconfig-{i:02d}",
    )
    ctx.add(
        frame,
        "benign_nx_misconfig",
        [
            (
                "client",
                ctx.cl.ips[client],
                "nxdomain",
                f"misconfigured host retries {len(names)} stale internal name(s) "
                f"every {period / 6e7:.0f} min ({n} NXDOMAIN)",
            )
        ],
    )


# --------------------------------------------------------------------------- assembly


def _parse_start(start: datetime | str | None) -> datetime:
    if start is None:
        return DEFAULT_START
    if isinstance(start, str):
        text = start.strip().replace("Z", "+00:00")
        start = datetime.fromisoformat(text)
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _finalize(
    bg: pl.DataFrame, injected: list[pl.DataFrame], cl: _Clients, rng: np.random.Generator
) -> pl.DataFrame:
    """Merge the time-sorted background with the campaigns and add the per-row fields."""
    raw = bg
    if injected:
        camp = pl.concat(injected, how="vertical").sort("ts_us", maintain_order=True)
        raw = bg.merge_sorted(camp, key="ts_us")
    n = raw.height
    uid = _random_chars(rng, n, 18, _B62)
    uid[:, 0] = ord("C")
    resolvers = pl.Series(["10.0.0.53", "10.0.0.54"], dtype=pl.String)
    client = raw["client"].to_numpy()
    answers = pl.col("answers")
    return raw.select(
        ts=pl.from_epoch("ts_us", time_unit="us").dt.replace_time_zone("UTC"),
        uid=_fixed_strings(uid),
        src_ip=pl.Series(cl.ips, dtype=pl.String).gather(client),
        src_port=pl.Series(rng.integers(1024, 65536, n), dtype=pl.Int32),
        dst_ip=resolvers.gather(client % 2),
        dst_port=pl.lit(53, dtype=pl.Int32),
        proto=pl.lit("udp"),
        trans_id=pl.Series(rng.integers(0, 65536, n), dtype=pl.Int32),
        rtt=pl.Series(raw["rtt_us"].to_numpy().astype(np.float64) / 1e6, nan_to_null=True),
        qname=pl.col("qname"),
        qtype=pl.col("qtype"),
        rcode=pl.col("rcode"),
        aa=pl.lit(False),
        tc=pl.lit(False),
        rd=pl.lit(True),
        ra=pl.col("rcode").is_not_null(),
        answers=answers,
        ttls=pl.when(answers.is_null())
        .then(None)
        .otherwise(pl.col("ttl").cast(pl.Float64).repeat_by(answers.list.len())),
        registered_domain=pl.col("registered_domain"),
        campaign=pl.col("campaign"),
    )


def campaign_counts(hours: int, clients: int) -> dict[str, int]:
    """Campaigns of each kind (attacks and benign anomalies) for a simulation.

    ``per week × hours / 168``, times ``sqrt(clients / 500)`` above
    :data:`REFERENCE_CLIENTS` hosts (a bigger network sees more of
    everything), rounded, and at least one of each kind.  Benign anomalies
    always outnumber the attacks: in short runs, where every kind's floor of
    one dominates, benign kinds are topped up in turn (most frequent first).

    >>> campaign_counts(168, 200)["beacon"], campaign_counts(168, 8000)["beacon"]
    (5, 20)
    """
    pop = max(1.0, clients / REFERENCE_CLIENTS) ** 0.5
    scale = hours / 168.0 * pop
    per = {**CAMPAIGNS_PER_WEEK, **BENIGN_PER_WEEK}
    out = {kind: max(1, round(n * scale)) for kind, n in per.items()}
    order = sorted(BENIGN_PER_WEEK, key=lambda k: -BENIGN_PER_WEEK[k])
    j = 0
    while sum(out[k] for k in BENIGN_KINDS) <= sum(out[k] for k in THREAT_KINDS):
        out[order[j % len(order)]] += 1
        j += 1
    return out


def simulate(
    hours: int,
    clients: int,
    seed: int,
    start: datetime | str | None = None,
    dga_lists: dict[str, list[str]] | None = None,
    campaigns: dict[str, int] | None = None,
) -> SimResult:
    """Simulate ``hours`` of DNS from ``clients`` hosts with injected campaigns.

    ``start`` (ISO-8601 text or datetime; naive means UTC) is floored to the
    hour; by default :data:`DEFAULT_START`.  DGA bots use the reimplemented
    generators of :data:`DGA_STYLES`, or, when ``dga_lists`` (family → names,
    see :func:`read_dga_lists`) is given, real families' names: campaign
    ``i`` takes the ``i``-th family after a seeded offset.  ``campaigns``
    overrides :func:`campaign_counts` for some kinds (``{"dga": 8}``: eight
    DGA campaigns, one per family of an eight-family list; ``0`` leaves a
    kind out).  The result depends only on the arguments.

    >>> r = simulate(hours=2, clients=5, seed=1)
    >>> r.events.height > 0, r.labels.columns[:3]
    (True, ['kind', 'entity_type', 'entity'])
    """
    if hours < 1:
        raise ValueError("hours must be at least 1")
    if clients < 1:
        raise ValueError("clients must be at least 1")
    t_start = _parse_start(start)
    t0_us = int((t_start - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000
    seq = np.random.SeedSequence(seed)
    r_uni, r_cl, r_bg, r_camp, r_fin = (np.random.default_rng(s) for s in seq.spawn(5))
    counts = campaign_counts(hours, clients)
    for kind, n in (campaigns or {}).items():
        if kind not in counts:
            raise ValueError(f"unknown campaign kind {kind!r}")
        if n < 0:
            raise ValueError(f"campaign count of {kind} must be >= 0")
        counts[kind] = int(n)
    reserve = {k: counts[k] for k in ("newdomain", "benign_adoption", "benign_cdn")}
    uni = _build_universe(r_uni, max(1500, 9 * clients), clients, reserve)
    cl = _build_clients(r_cl, clients, t_start, hours)
    bg_ev = _background_arrays(r_bg, uni, cl, hours, t0_us, rate=_RATE)
    tabs = _build_tables(r_uni, uni, cl)
    bg = _site_events_frame(r_bg, uni, tabs, bg_ev, None, noise=True)

    free = np.flatnonzero(~cl.server)
    free = free[r_camp.permutation(len(free))].tolist()
    ctx = _Ctx(
        rng=r_camp,
        uni=uni,
        tabs=tabs,
        cl=cl,
        hours=hours,
        t0_us=t0_us,
        warm_s=3600.0 * min(24, hours // 4),
        bg=bg_ev,
        taken_names=set(uni.names) | set(uni.typos) | {INTERNAL_ZONE},
        taken_sites={0},
        free_clients=free,
        dga_lists=dict(dga_lists or {}),
    )
    vis = _site_visitors(ctx)
    n_styles = len(ctx.dga_lists) or len(DGA_STYLES)
    dga_offset = int(r_camp.integers(n_styles))
    injectors: dict[str, Callable[[int], None]] = {
        "masquerade": lambda i: _inject_masquerade(ctx, i, vis),
        "volume_spike": lambda i: _inject_volume(ctx, i, vis),
        "dga": lambda i: _inject_dga(ctx, i, dga_offset),
        "tunnel": lambda i: _inject_tunnel(ctx, i),
        "beacon": lambda i: _inject_beacon(ctx, i),
        "exfil": lambda i: _inject_exfil(ctx, i),
        "newdomain": lambda i: _inject_newdomain(ctx, i),
        "benign_adoption": lambda i: _inject_adoption(ctx, i),
        "benign_update_burst": lambda i: _inject_update_burst(ctx, i, vis),
        "benign_cdn": lambda i: _inject_cdn(ctx, i),
        "benign_nx_misconfig": lambda i: _inject_nx_misconfig(ctx, i),
    }
    for kind, count in counts.items():
        for i in range(count):
            injectors[kind](i)
    events = _finalize(bg, ctx.frames, cl, r_fin)
    schema: dict[str, pl.DataType] = {c: pl.String() for c in LABEL_COLUMNS}
    schema["threat"] = pl.Int8()
    labels = pl.DataFrame(ctx.labels, schema=schema).sort(
        ["window_start", "campaign", "detector_family", "entity"]
    )
    stats = {
        "events": events.height,
        "background_events": bg.height,
        "injected_events": events.height - bg.height,
        "campaigns": int(labels["campaign"].n_unique()),
        "threat_campaigns": int(labels.filter(pl.col("threat") == 1)["campaign"].n_unique()),
        "benign_campaigns": int(labels.filter(pl.col("threat") == 0)["campaign"].n_unique()),
        "label_rows": labels.height,
    }
    return SimResult(events, labels, t_start, hours, clients, seed, stats)


# Base habitual-query rate per pair weight per active hour (calibrated to EVENTS_PER_CLIENT_WEEK).
_RATE = 0.1


# --------------------------------------------------------------------------- output


def _fixed6(us: pl.Expr) -> pl.Expr:
    """Integer microseconds -> ``seconds.micros`` text, as Zeek prints times."""
    frac = (us % 1_000_000 + 1_000_000).cast(pl.String).str.slice(1)  # zero-padded 6 digits
    return pl.concat_str((us // 1_000_000).cast(pl.String), pl.lit("."), frac)


def _zeek_time(ts_us: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ts_us)).strftime(
        "%Y-%m-%d-%H-%M-%S"
    )


def zeek_header(open_ts_us: int) -> str:
    """The Zeek ASCII-writer header of a ``dns.log`` opened at ``open_ts_us``."""
    return (
        "#separator \\x09\n"
        "#set_separator\t,\n"
        "#empty_field\t(empty)\n"
        "#unset_field\t-\n"
        "#path\tdns\n"
        f"#open\t{_zeek_time(open_ts_us)}\n"
        "#fields\t" + "\t".join(ZEEK_FIELDS) + "\n"
        "#types\t" + "\t".join(ZEEK_TYPES) + "\n"
    )


def _join_list(col: pl.Series, fmt: Callable[[pl.Expr], pl.Expr]) -> pl.Series:
    """Zeek set/vector text of a list column: elements formatted by ``fmt``, joined by ``,``.

    Null lists stay null (written as the unset field).  Vectorised through
    Arrow: flatten, format, rebuild with the same offsets, ``binary_join``.
    """
    arr = col.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.list_(arr.type.value_type))
    flat = (
        pl.Series(pl.from_arrow(arr.values)).to_frame("v").select(fmt(pl.col("v")).cast(pl.String))
    )
    values = flat.to_series().to_arrow().cast(pa.string())
    rebuilt = pa.ListArray.from_arrays(arr.offsets, values, mask=arr.is_null())
    joined = pc.binary_join(rebuilt, ",")
    return pl.Series(col.name, pl.from_arrow(joined)).cast(pl.String)


def _zeek_columns(events: pl.DataFrame, text: bool) -> pl.DataFrame:
    qtypes = events["qtype"].unique().drop_nulls().to_list()
    qmap = {q: qtype_code(q) for q in qtypes}
    rmap = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5}
    ts_us = pl.col("ts").dt.epoch("us")
    rtt_us = (pl.col("rtt") * 1e6).round().cast(pl.Int64)

    def flag(col: str) -> pl.Expr:
        return (
            pl.when(pl.col(col)).then(pl.lit("T")).otherwise(pl.lit("F")) if text else pl.col(col)
        )

    if text:
        ts = _fixed6(ts_us)
        rtt = _fixed6(rtt_us)
        answers = pl.lit(_join_list(events["answers"], lambda v: v))
        ttls = pl.lit(
            _join_list(events["ttls"], lambda v: _fixed6((v * 1e6).round().cast(pl.Int64)))
        )
    else:
        # True division in NumPy: the nearest double to each decimal value.
        ts = pl.lit(pl.Series(events["ts"].dt.epoch("us").to_numpy() / 1e6))
        rtt = pl.col("rtt")
        answers = pl.col("answers")
        ttls = pl.col("ttls")
    return events.select(
        ts.alias("ts"),
        pl.col("uid"),
        pl.col("src_ip").alias("id.orig_h"),
        pl.col("src_port").alias("id.orig_p"),
        pl.col("dst_ip").alias("id.resp_h"),
        pl.col("dst_port").alias("id.resp_p"),
        pl.col("proto"),
        pl.col("trans_id"),
        rtt.alias("rtt"),
        pl.col("qname").alias("query"),
        pl.lit(1).alias("qclass"),
        pl.lit("C_INTERNET").alias("qclass_name"),
        pl.col("qtype").replace_strict(qmap, return_dtype=pl.Int64).alias("qtype"),
        pl.col("qtype").alias("qtype_name"),
        pl.col("rcode").replace_strict(rmap, default=None, return_dtype=pl.Int64).alias("rcode"),
        pl.col("rcode").alias("rcode_name"),
        flag("aa").alias("AA"),
        flag("tc").alias("TC"),
        flag("rd").alias("RD"),
        flag("ra").alias("RA"),
        pl.lit(0).alias("Z"),
        answers.alias("answers"),
        ttls.alias("TTLs"),
        (pl.lit("F") if text else pl.lit(False)).alias("rejected"),
    )


def write_zeek(result: SimResult, out_dir: str | Path, fmt: str = "zeek") -> dict[str, Path]:
    """Write ``dns.log`` (Zeek TSV, or JSON lines with ``fmt='zeek-json'``) and ``labels.csv``.

    The ``#open``/``#close`` lines are the first event's time and the end of
    the simulated period, so the output depends only on the simulation.
    """
    if fmt not in ("zeek", "zeek-json"):
        raise ValueError(f"unknown format {fmt!r}; choose zeek or zeek-json")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "dns.log"
    ev = result.events
    start_us = int((result.start - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000
    open_us = int(ev["ts"].dt.epoch("us").min()) if ev.height else start_us  # type: ignore[arg-type]
    close_us = start_us + result.hours * 3_600_000_000
    if fmt == "zeek":
        with open(log, "wb") as fh:
            fh.write(zeek_header(open_us).encode())
            _zeek_columns(ev, text=True).write_csv(
                fh, separator="\t", include_header=False, quote_style="never", null_value="-"
            )
            fh.write(f"#close\t{_zeek_time(close_us)}\n".encode())
    else:
        _zeek_columns(ev, text=False).write_ndjson(log)
    labels = out / "labels.csv"
    result.labels.write_csv(labels)
    return {"log": log, "labels": labels}


# --------------------------------------------------------------------------- flows (conn.log)
#
# ``dnsieve simulate --flows`` also writes a Zeek conn.log consistent with the DNS above (the
# DNS events are not changed): hosts connect to the addresses they just resolved, talk to NTP
# by address, and three kinds of flow campaigns are injected.  Labels go to conn_labels.csv
# (LABEL_COLUMNS, entity types client and client_dest).

CONN_FIELDS: tuple[str, ...] = (
    "ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service",
    "duration", "orig_bytes", "resp_bytes", "conn_state", "local_orig", "local_resp",
    "missed_bytes", "history", "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes",
    "tunnel_parents",
)  # fmt: skip
CONN_TYPES: tuple[str, ...] = (
    "time", "string", "addr", "port", "addr", "port", "enum", "string", "interval", "count",
    "count", "string", "bool", "bool", "count", "string", "count", "count", "count", "count",
    "set[string]",
)  # fmt: skip

#: The injected flow kinds and the detector family each is meant for.
FLOW_KINDS: dict[str, str] = {
    "flow_c2_ip": "conn_no_dns",
    "flow_beacon": "conn_beacon",
    "flow_exfil": "conn_exfil",
}

_NTP_SERVERS = ("162.159.200.1", "162.159.200.123", "129.250.35.250", "216.239.35.0")
_IP_ANSWER = r"^(\d{1,3}\.){3}\d{1,3}$"


@dataclass
class FlowSim:
    """Simulated flows (conn.log columns, sorted by ``ts``) and their campaign labels."""

    conn: pl.DataFrame
    labels: pl.DataFrame


def _conn_rows(
    rng: np.random.Generator,
    ts_us: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    dport: np.ndarray,
    proto: str,
    service: np.ndarray | str | None,
    duration: np.ndarray,
    orig: np.ndarray,
    resp: np.ndarray,
    state: np.ndarray | str,
    campaign: str | None,
) -> pl.DataFrame:
    """Conn rows with packet counts and IP bytes derived from the payload sizes."""
    n = len(ts_us)
    hdr = 52 if proto == "tcp" else 28
    opk = np.maximum(1, np.ceil(orig / 1400.0).astype(np.int64) + (2 if proto == "tcp" else 0))
    rpk = np.where(
        resp > 0, np.ceil(resp / 1400.0).astype(np.int64) + (1 if proto == "tcp" else 0), 0
    )
    return pl.DataFrame(
        {
            "ts_us": ts_us.astype(np.int64),
            "src_ip": src.astype(str),
            "src_port": rng.integers(32768, 61000, n).astype(np.int32),
            "dst_ip": dst.astype(str),
            "dst_port": dport.astype(np.int32),
            "proto": np.full(n, proto),
            "service": np.full(n, service)
            if isinstance(service, str) or service is None
            else service,
            "duration": duration.astype(np.float64),
            "orig_bytes": orig.astype(np.int64),
            "resp_bytes": resp.astype(np.int64),
            "conn_state": np.full(n, state) if isinstance(state, str) else state,
            "orig_pkts": opk,
            "orig_ip_bytes": orig.astype(np.int64) + hdr * opk,
            "resp_pkts": rpk,
            "resp_ip_bytes": resp.astype(np.int64) + hdr * rpk,
            "campaign": pl.Series([campaign] * n, dtype=pl.String),
        },
        schema_overrides={"service": pl.String, "conn_state": pl.String},
    )


def _background_conns(rng: np.random.Generator, result: SimResult) -> pl.DataFrame:
    """Connections after successful A lookups, and NTP by address (no DNS), for every host."""
    ev = (
        result.events.filter(
            (pl.col("rcode") == "NOERROR")
            & (pl.col("qtype") == "A")
            & pl.col("answers").is_not_null()
        )
        .select(
            "ts",
            "src_ip",
            pl.col("answers")
            .list.eval(pl.element().filter(pl.element().str.contains(_IP_ANSWER)))
            .list.first()
            .alias("ip"),
            "registered_domain",
        )
        .filter(pl.col("ip").is_not_null() & ~pl.col("ip").str.starts_with("10."))
    )
    ev = ev.filter(pl.Series(rng.random(ev.height) < 0.8))
    k = 1 + rng.poisson(0.6, ev.height)
    rep = ev.select(pl.all().repeat_by(pl.Series(k)).explode())
    n = rep.height
    lag = (rng.exponential(0.4, n) + 0.005) * 1e6  # connect a moment after the answer
    first = np.repeat(np.cumsum(np.concatenate([[0], k[:-1]])), k)
    order = np.arange(n) - first  # 0 for a lookup's first connection, 1, 2, ... after
    ts_us = (
        rep["ts"].dt.epoch("us").to_numpy()
        + lag.astype(np.int64)
        + (order * rng.exponential(8e6, n)).astype(np.int64)
    )
    web = rng.random(n) < 0.85
    dport = np.where(web, 443, 80)
    service = np.where(web, "ssl", "http")
    dur = np.minimum(rng.lognormal(0.3, 1.6, n), 3600.0)
    orig = rng.lognormal(6.6, 0.9, n).astype(np.int64)
    resp = rng.lognormal(9.2, 1.7, n).astype(np.int64)
    state = np.where(rng.random(n) < 0.96, "SF", np.where(rng.random(n) < 0.5, "S0", "RSTO"))
    web_rows = _conn_rows(rng, ts_us, rep["src_ip"].to_numpy(), rep["ip"].to_numpy(), dport, "tcp",
                          service, dur, orig, resp, state, None)  # fmt: skip
    # NTP by address every ~4 h per host (allow-listed by port, never resolved)
    hosts = result.events["src_ip"].unique().sort().to_numpy()
    start_us = int(result.start.timestamp() * 1e6)
    per = max(1, result.hours // 4)
    m = len(hosts) * per
    t_ntp = (
        start_us
        + (np.repeat(np.arange(per), len(hosts)) * 4 * 3600 + rng.uniform(0, 4 * 3600, m)) * 1e6
    )
    ntp = _conn_rows(rng, t_ntp.astype(np.int64), np.tile(hosts, per),
                     np.array(_NTP_SERVERS)[rng.integers(0, len(_NTP_SERVERS), m)],
                     np.full(m, 123), "udp", "ntp", np.full(m, 0.03), np.full(m, 48),
                     np.full(m, 48), "SF", None)  # fmt: skip
    return pl.concat([web_rows, ntp])


def _flow_campaigns(
    rng: np.random.Generator, result: SimResult, n_each: int, taken: set[str]
) -> tuple[list[pl.DataFrame], list[dict[str, object]]]:
    """Hard-coded-IP C2, connection beacons and exfiltration, on hosts of no DNS campaign."""
    hosts = [h for h in result.events["src_ip"].unique().sort().to_list() if h not in taken]
    rng.shuffle(hosts)
    start_us = int(result.start.timestamp() * 1e6)
    end_us = start_us + result.hours * 3_600_000_000
    # popular resolved addresses (CDNs, SaaS): fronting targets and upload endpoints
    pop = (
        result.events.filter((pl.col("qtype") == "A") & pl.col("answers").is_not_null())
        .select("src_ip", pl.col("answers").list.first().alias("ip"))
        .filter(pl.col("ip").str.contains(_IP_ANSWER) & ~pl.col("ip").str.starts_with("10."))
        .group_by("ip")
        .agg(pl.col("src_ip").n_unique().alias("k"))
        .sort(["k", "ip"], descending=[True, False])
        .head(50)["ip"]
        .to_list()
    )
    frames: list[pl.DataFrame] = []
    labels: list[dict[str, object]] = []

    def label(kind: str, etype: str, entity: str, ts: np.ndarray, text: str, camp: str) -> None:
        labels.append(
            {
                "kind": kind,
                "entity_type": etype,
                "entity": entity,
                "window_start": _iso(int(ts.min()) // 1_000_000 * 1_000_000),
                "window_end": _iso(int(ts.max()) // 1_000_000 * 1_000_000 + 1_000_000),
                "detector_family": FLOW_KINDS[kind],
                "description": text,
                "campaign": camp,
                "threat": 1,
            }
        )

    def window(lo_h: float, hi_h: float) -> tuple[int, int]:
        length = int(rng.uniform(lo_h, hi_h) * 3.6e9)
        length = min(length, end_us - start_us - 3_600_000_000)
        lo = int(
            rng.integers(start_us + 3_600_000_000, max(start_us + 3_600_000_001, end_us - length))
        )
        return lo, lo + length

    for i in range(n_each):
        if len(hosts) < 3:
            break
        # 1. hard-coded C2 address: irregular check-ins, never resolved by anyone
        host = hosts.pop()
        ip = f"185.{int(rng.integers(100, 250))}.{int(rng.integers(0, 255))}.{int(rng.integers(1, 255))}"
        lo, hi = window(6, 24)
        ts = lo + np.cumsum(rng.exponential(rng.uniform(300, 1800), 400) * 1e6).astype(np.int64)
        ts = ts[ts < hi]
        if len(ts) >= 3:
            n = len(ts)
            camp = f"flow-c2-{i:02d}"
            frames.append(_conn_rows(rng, ts, np.full(n, host), np.full(n, ip),
                                     np.full(n, int(rng.choice([443, 8443, 4444, 8080]))), "tcp",
                                     None, rng.lognormal(0, 1, n), rng.lognormal(6, 0.5, n).astype(np.int64),
                                     rng.lognormal(7, 0.8, n).astype(np.int64), "SF", camp))  # fmt: skip
            label(
                "flow_c2_ip",
                "client_dest",
                f"{host}|{ip}",
                ts,
                f"C2 at a hard-coded address ({n} connections)",
                camp,
            )
        # 2. connection beacon to a popular (fronted) address the host's DNS did resolve
        host = hosts.pop()
        ip = pop[int(rng.integers(0, max(1, min(len(pop), 20))))] if pop else "104.16.0.1"
        interval = float(np.exp(rng.uniform(np.log(60), np.log(1800))))
        jitter = float(rng.uniform(0.0, 0.3))
        lo, hi = window(max(12.0, 25 * interval / 3600), max(36.0, 40 * interval / 3600))
        gaps = interval * (1 + rng.uniform(-jitter, jitter, 5000)) * 1e6
        ts = lo + np.cumsum(gaps).astype(np.int64)
        ts = ts[ts < hi]
        if len(ts) >= 6:
            n = len(ts)
            camp = f"flow-beacon-{i:02d}"
            size = int(rng.integers(200, 2000))
            frames.append(_conn_rows(rng, ts, np.full(n, host), np.full(n, ip), np.full(n, 443), "tcp", "ssl",
                                     rng.lognormal(-1, 0.3, n), (size * rng.uniform(0.97, 1.03, n)).astype(np.int64),
                                     (4 * size * rng.uniform(0.95, 1.05, n)).astype(np.int64), "SF", camp))  # fmt: skip
            label("flow_beacon", "client_dest", f"{host}|{ip}", ts,
                  f"beacon every {interval:.0f} s (jitter {jitter:.0%}) to a fronted address", camp)  # fmt: skip
        # 3. exfiltration: hundreds of MB uploaded over hours to a resolved address
        host = hosts.pop()
        ip = pop[int(rng.integers(0, max(1, len(pop))))] if pop else "104.16.0.2"
        lo, hi = window(1, 4)
        total = rng.uniform(2e8, 2e9)
        n = int(rng.integers(20, 120))
        ts = np.sort(rng.integers(lo, hi, n))
        camp = f"flow-exfil-{i:02d}"
        frames.append(_conn_rows(rng, ts, np.full(n, host), np.full(n, ip), np.full(n, 443), "tcp", "ssl",
                                 rng.uniform(20, 300, n), (total / n * rng.uniform(0.5, 1.5, n)).astype(np.int64),
                                 rng.lognormal(8, 0.5, n).astype(np.int64), "SF", camp))  # fmt: skip
        label(
            "flow_exfil",
            "client",
            host,
            ts,
            f"{total / 1e6:.0f} MB uploaded in {(hi - lo) / 3.6e9:.1f} h",
            camp,
        )
    return frames, labels


def simulate_flows(result: SimResult, campaigns: int | None = None) -> FlowSim:
    """Flows consistent with ``result``'s DNS plus injected flow campaigns.

    ``campaigns`` of each kind (:data:`FLOW_KINDS`; default 2 per 1,000 hosts
    and week, at least 1).  The DNS events are not touched.
    """
    rng = np.random.default_rng([result.seed, 16])
    if campaigns is None:
        campaigns = max(1, round(2 * result.clients / 1000 * result.hours / 168))
    taken = {
        e.split("|")[0]
        for e in result.labels.filter(pl.col("entity_type") != "domain")["entity"].to_list()
    }
    bg = _background_conns(rng, result)
    frames, labels = _flow_campaigns(rng, result, campaigns, taken)
    end_us = int(result.start.timestamp() * 1e6) + result.hours * 3_600_000_000
    conn = (
        pl.concat([bg, *frames])
        .filter(pl.col("ts_us") < end_us)
        .sort("ts_us", "src_ip", maintain_order=True)
    )
    n = conn.height
    uid = _random_chars(rng, n, 18, _B62)
    uid[:, 0] = ord("C")
    conn = conn.with_columns(
        pl.from_epoch("ts_us", time_unit="us").dt.replace_time_zone("UTC").alias("ts"),
        _fixed_strings(uid).alias("uid"),
    ).drop("ts_us")
    schema = dict.fromkeys(LABEL_COLUMNS, pl.String) | {"threat": pl.Int64}
    return FlowSim(conn, pl.DataFrame(labels, schema=schema))


def write_conn(flows: FlowSim, out_dir: str | Path) -> dict[str, Path]:
    """Write ``conn.log`` (Zeek TSV) and ``conn_labels.csv``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    c = flows.conn
    exprs = [
        (pl.col("ts").dt.epoch("us") // 1_000_000).cast(pl.String)
        + "."
        + (pl.col("ts").dt.epoch("us") % 1_000_000).cast(pl.String).str.zfill(6),
        pl.col("uid"),
        pl.col("src_ip"),
        pl.col("src_port"),
        pl.col("dst_ip"),
        pl.col("dst_port"),
        pl.col("proto"),
        pl.col("service"),
        pl.col("duration").round(6),
        pl.col("orig_bytes"),
        pl.col("resp_bytes"),
        pl.col("conn_state"),
        pl.lit("T"),
        pl.lit("F"),
        pl.lit(0),
        pl.when(pl.col("conn_state") == "SF").then(pl.lit("ShADadFf")).otherwise(pl.lit("S")),
        pl.col("orig_pkts"),
        pl.col("orig_ip_bytes"),
        pl.col("resp_pkts"),
        pl.col("resp_ip_bytes"),
        pl.lit(None, dtype=pl.String),
    ]
    text = c.select([e.alias(name) for e, name in zip(exprs, CONN_FIELDS, strict=True)])
    open_us = int(c["ts"].dt.epoch("us").min()) if c.height else 0  # type: ignore[arg-type]
    log = out / "conn.log"
    with open(log, "wb") as fh:
        fh.write(
            (
                "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n"
                f"#path\tconn\n#open\t{_zeek_time(open_us)}\n"
                "#fields\t" + "\t".join(CONN_FIELDS) + "\n#types\t" + "\t".join(CONN_TYPES) + "\n"
            ).encode()
        )
        text.write_csv(
            fh, separator="\t", include_header=False, quote_style="never", null_value="-"
        )
    labels = out / "conn_labels.csv"
    flows.labels.write_csv(labels)
    return {"conn": log, "labels": labels}
