"""Policy files: validation names file, field and expectation; route groups; rules."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shieldware.policy import PolicyError, default_policy, load_policy, policy_from_text


def test_default_policy_groups_a_shop():
    policy = default_policy()
    table = policy.route_table
    assert table.group_for("GET", "/static/app.css").name == "static"
    assert table.group_for("GET", "/images/logo.png").name == "static"
    assert table.group_for("POST", "/login").name == "login"
    assert table.group_for("GET", "/checkout").name == "checkout"
    assert table.group_for("POST", "/cart/add").name == "cart"
    assert table.group_for("GET", "/search").name == "search"
    assert table.group_for("GET", "/product/17").name == "product"
    assert table.group_for("GET", "/api/products").name == "api"
    assert table.group_for("GET", "/").name == "browse"
    # Methods restrict groups: a POST to a .js path is not a static asset.
    assert table.group_for("POST", "/static/app.js").name == "browse"


def test_every_path_glob_folds_case_and_allows_one_trailing_slash():
    """Groups, rule paths, outcome paths and watched actions all read a path as Express, ASP.NET,
    IIS or Spring route it: "/LOGIN" and "/login/" are "/login", "/login//" and "/loginx" are not."""
    policy = policy_from_text(
        "groups:\n"
        "  - name: login\n"
        "    paths: [/login]\n"
        "    watch: {login: [/login]}\n"
        "    outcomes: [{method: POST, path: /login, status: 401, event: login_failed}]\n"
        "  - name: browse\n"
        "    paths: ['/*']\n"
        "rules:\n"
        "  - name: probe\n"
        "    when: {path: /WP-Admin*}\n"
        "    action: block\n")
    login = policy.route_table.by_name("login")
    (failed,) = login.setting("outcomes")
    (probe,) = policy.rules
    for path, same in [("/login", True), ("/LOGIN", True), ("/Login/", True), ("/login//", False), ("/loginx", False)]:
        assert (policy.route_table.group_for("POST", path) is login) is same, path
        assert (login.setting("watch").action_for("POST", path) == "login") is same, path
        assert failed.matches("POST", path, 401) is same, path
    assert probe.paths.match("/wp-admin/") and probe.paths.match("/WP-ADMIN/setup.php")
    assert not probe.paths.match("/blog/wp-admin")


def test_route_answers_are_cached_within_bounds(monkeypatch):
    import shieldware.policy as policy_module

    monkeypatch.setattr(policy_module, "_MAX_ROUTE_ANSWERS", 8)
    table = default_policy().route_table
    asked = [("GET", f"/product/{i}") for i in range(20)] + [("POST", "/login"), ("GET", "/static/a.css")]
    first = [table.group_for(method, path).name for method, path in asked]
    again = [table.group_for(method, path).name for method, path in asked]
    assert first == again == ["product"] * 20 + ["login", "static"]
    assert len(table._answers) <= 8  # a client inventing paths resets the cache, never grows it
    long_path = "/product/" + "9" * 300
    assert table.group_for("GET", long_path).name == "product"
    assert ("GET", long_path) not in table._answers


def test_every_mistake_is_reported_with_field_and_expectation(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "mode: enforcing\n"
        "groups:\n"
        "  - name: login\n"
        "    paths: [/login]\n"
        "    challenge_above: high\n"
        "  - paths: [/x]\n"
        "rules:\n"
        "  - name: r1\n"
        "    when: {ip: [not-a-cidr], colour: blue}\n"
        "    action: smite\n"
        "trusted_proxies: [10.0.0.0/33]\n"
        "surprise: 1\n"
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    text = str(caught.value)
    assert str(path) in text
    assert "mode: expected enforce or monitor, got 'enforcing'" in text
    assert "groups[0].challenge_above: expected a number from 0 to 100" in text
    assert "groups[1].name: expected a group name" in text
    assert "rules[0].action: expected one of allow, block, challenge, throttle, weigh, got 'smite'" in text
    assert "trusted_proxies[0]: expected an IP address or CIDR" in text
    assert "(top level).surprise: unknown field" in text


def test_client_ip_header_is_one_of_the_three_a_proxy_writes():
    assert default_policy().client_ip_header == "x-forwarded-for"
    assert policy_from_text("client_ip_header: X-Real-IP\n").client_ip_header == "x-real-ip"
    with pytest.raises(PolicyError) as caught:
        policy_from_text("client_ip_header: cf-connecting-ip\n", "p.yaml")
    assert ("client_ip_header: expected the header your trusted proxies write the client's address into, one of "
            "x-forwarded-for, forwarded, x-real-ip, got 'cf-connecting-ip'") in str(caught.value)


def test_rule_conditions_are_validated_even_when_action_is_fine():
    with pytest.raises(PolicyError) as caught:
        policy_from_text("rules:\n  - name: r\n    when: {colour: blue, ip: [nope]}\n    action: block\n", "p.yaml")
    text = str(caught.value)
    assert "rules[0].when.colour: unknown condition" in text
    assert "rules[0].when.ip[0]" in text


def test_yaml_syntax_error_names_line():
    with pytest.raises(PolicyError) as caught:
        policy_from_text("mode: [enforce\n", "broken.yaml")
    assert "broken.yaml: line" in str(caught.value)


def test_unreadable_file_is_a_policy_error(tmp_path):
    with pytest.raises(PolicyError, match="cannot be read"):
        load_policy(tmp_path / "missing.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(binary)


def test_check_policy_cli(tmp_path):
    good = subprocess.run([sys.executable, "-m", "shieldware.cli", "check-policy", "--print-default"],
                          capture_output=True, text=True, check=True).stdout
    (tmp_path / "good.yaml").write_text(good)
    ok = subprocess.run([sys.executable, "-m", "shieldware.cli", "check-policy", str(tmp_path / "good.yaml")],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "valid" in ok.stdout
    (tmp_path / "bad.yaml").write_text("defaults: {block_above: 150}\n")
    bad = subprocess.run([sys.executable, "-m", "shieldware.cli", "check-policy", str(tmp_path / "bad.yaml")],
                         capture_output=True, text=True)
    assert bad.returncode == 1
    assert "defaults.block_above: expected a number from 0 to 100, or null for never, got 150" in bad.stderr
