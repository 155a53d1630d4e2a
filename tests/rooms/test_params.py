"""The room parameters: field types, query options and URLs."""

from __future__ import annotations

import json

from twisted.trial import unittest

from webrtcstack.rooms.params import Query, SiteUrls, media_track_constraints, room_parameters

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


def params(qs: str = "", ua: str = "", base: str = "http://h:8080", **kw):
    pairs = [tuple(p.split("=", 1)) if "=" in p else (p, "") for p in qs.split("&") if p]
    return room_parameters(Query(pairs), urls=SiteUrls(base), user_agent=ua, **kw)


class MediaTests(unittest.TestCase):
    def test_booleans(self) -> None:
        """true, empty and absent mean true; false means false."""
        self.assertIs(media_track_constraints(None), True)
        self.assertIs(media_track_constraints(""), True)
        self.assertIs(media_track_constraints("TRUE"), True)
        self.assertIs(media_track_constraints("false"), False)

    def test_lists(self) -> None:
        """Unprefixed keys are mandatory except goog* ones; values stay strings; malformed items are skipped."""
        self.assertEqual(
            media_track_constraints("minWidth=1280,googNoise=true,optional:maxFps=30,junk,mandatory:x=1"),
            {"mandatory": {"minWidth": "1280", "x": "1"}, "optional": [{"googNoise": "true"}, {"maxFps": "30"}]},
        )

    def test_defaults_per_browser(self) -> None:
        """Safari gets plain true/true; desktop Chrome gets the optional HD default."""
        self.assertEqual(json.loads(params(ua="Safari")["media_constraints"]), {"audio": True, "video": True})
        self.assertEqual(json.loads(params(ua=CHROME)["media_constraints"]),
                         {"audio": True, "video": {"mandatory": {}, "optional": [{"minWidth": "1280"}, {"minHeight": "720"}]}})
        android = CHROME.replace("X11; Linux x86_64", "Linux; Android 14")
        self.assertEqual(json.loads(params(ua=android)["media_constraints"])["video"], True)

    def test_hd_and_warnings(self) -> None:
        """hd=true forces mandatory HD and warns when video is also given; minre warns."""
        p = params("hd=true&video=false&minre=1")
        self.assertEqual(json.loads(p["media_constraints"])["video"], {"mandatory": {"minWidth": "1280", "minHeight": "720"}, "optional": []})
        self.assertEqual(p["warning_messages"], ['The "minre" and "maxre" parameters are no longer supported. Use "video" instead.',
                                                 'The "hd" parameter has overridden video=false'])

    def test_audio_false_and_fake(self) -> None:
        """audio=false gives false and firefox_fake_device adds fake: true."""
        m = json.loads(params("audio=false&firefox_fake_device=1")["media_constraints"])
        self.assertEqual((m["audio"], m["fake"]), (False, True))


class FieldTests(unittest.TestCase):
    def test_types(self) -> None:
        """The double-encoded fields are strings of JSON, the lists real lists."""
        p = params()
        for key in ("pc_config", "pc_constraints", "offer_options", "media_constraints", "is_loopback",
                    "bypass_join_confirmation", "version_info"):
            self.assertIsInstance(p[key], str, key)
            json.loads(p[key])
        self.assertEqual((p["error_messages"], p["warning_messages"], p["offer_options"]), ([], [], "{}"))
        self.assertEqual(p["is_loopback"], "false")
        self.assertNotIn("room_id", p)

    def test_pc_config_it(self) -> None:
        """it= adds iceTransports to pc_config, which keeps apprtc's fixed fields."""
        self.assertEqual(json.loads(params("it=relay")["pc_config"]),
                         {"iceServers": [], "bundlePolicy": "max-bundle", "rtcpMuxPolicy": "require", "iceTransports": "relay"})

    def test_pc_constraints(self) -> None:
        """dtls/dscp/ipv6 true/false add optional entries; loopback forces dtls off and adds the loopback script."""
        self.assertEqual(json.loads(params("dtls=TRUE&dscp=false&ipv6=maybe")["pc_constraints"]),
                         {"optional": [{"DtlsSrtpKeyAgreement": True}, {"googDscp": False}]})
        p = params("debug=loopback&dtls=true")
        self.assertEqual(json.loads(p["pc_constraints"]), {"optional": [{"DtlsSrtpKeyAgreement": False}]})
        self.assertEqual(p["is_loopback"], "true")
        self.assertEqual(p["include_loopback_js"], '<script src="/js/loopback.js"></script>')

    def test_urls_default(self) -> None:
        """By default signaling and ICE are on our own site, scheme following the site's."""
        p = params()
        self.assertEqual((p["wss_url"], p["wss_post_url"], p["ice_server_url"]),
                         ("ws://h:8080/ws", "http://h:8080/collider", "http://h:8080/v1alpha/iceconfig?key="))
        p = params(base="https://call.example.org")
        self.assertEqual((p["wss_url"], p["wss_post_url"]), ("wss://call.example.org/ws", "https://call.example.org/collider"))

    def test_urls_overrides(self) -> None:
        """wshpp/wstls point at a collider host; ts/apikey move the ICE provider; empty ts disables it; tt passes through."""
        p = params("wshpp=127.0.0.1:8089&wstls=false&ts=https://ice.example&apikey=k&tt=udp", base="https://h",
                   allowed_option_hosts=("127.0.0.1:8089", "ice.example"))
        self.assertEqual((p["wss_url"], p["wss_post_url"]), ("ws://127.0.0.1:8089/ws", "http://127.0.0.1:8089"))
        self.assertEqual(p["ice_server_url"], "https://ice.example/v1alpha/iceconfig?key=k")
        self.assertEqual(p["ice_server_transports"], "udp")
        self.assertEqual(params("ts=")["ice_server_url"], "")

    def test_crafted_link_cannot_move_the_call(self) -> None:
        """wshpp and ts naming hosts outside [rooms] allowed_option_hosts are ignored (our own signaling and ICE servers, a warning on the page); a listed host, with or without its port, is honoured."""
        crafted = "wshpp=evil.example:443&ts=https://evil.example/ice&wstls=true"
        for allowed in ((), ("good.example",), ("evil.example:444",)):
            p = params(crafted, base="https://h", allowed_option_hosts=allowed)
            self.assertEqual((p["wss_url"], p["wss_post_url"], p["ice_server_url"]),
                             ("wss://h/ws", "https://h/collider", "https://h/v1alpha/iceconfig?key="), allowed)
            self.assertEqual(len(p["warning_messages"]), 2, p["warning_messages"])
        for sneaky in ("ts=https://good.example@evil.example", "ts=javascript:alert(1)", "wshpp=evil.example/x?good.example",
                       "ts=https://evil.example\\@good.example"):
            p = params(sneaky, base="https://h", allowed_option_hosts=("good.example",))
            self.assertIn("//h/", p["wss_url"] + p["ice_server_url"], sneaky)
            self.assertNotIn("evil", p["wss_url"] + p["ice_server_url"], sneaky)
        p = params(crafted, base="https://h", allowed_option_hosts=("evil.example",))
        self.assertEqual((p["wss_url"], p["ice_server_url"]),
                         ("wss://evil.example:443/ws", "https://evil.example/ice/v1alpha/iceconfig?key="))

    def test_room_link(self) -> None:
        """room_link re-appends every query argument once, in order, HTML-escaped; wstls=true upgrades it to https."""
        p = params("it=relay&x=<b>&it=all", room_id="abc")
        self.assertEqual(p["room_link"], "http://h:8080/r/abc?it=relay&x=&lt;b&gt;")
        self.assertEqual(params("wstls=true", room_id="abc")["room_link"], "https://h:8080/r/abc?wstls=true")
        self.assertEqual(params(room_id="abc")["room_id"], "abc")
