"""The report renders in a real browser: headless Chromium loads report.html and every
embedded figure decodes (naturalWidth > 0). Chromium is Debian's ``chromium`` package,
installed here when missing and running as root; otherwise the test is skipped."""

import datetime as dt
import re
import subprocess

import pytest
from helpers_browser import find_or_install_chromium

from kline.backtest import decide_promotion, run_backtest
from kline.config import FeatureConfig, Settings
from kline.features import build_features
from kline.providers.synthetic import SyntheticProvider
from kline.report import FIGURES, ReportInputs, render_report

CHECK = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute('data-images', imgs.length + ':' + ok);
});
</script></body>"""
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=10000"]


@pytest.fixture(scope="module")
def chromium() -> str:
    return find_or_install_chromium()


def images_loaded(chromium: str, html_path, profile) -> tuple[int, int]:
    out = subprocess.run(
        [chromium, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", f"file://{html_path}"],
        capture_output=True, text=True, timeout=120,
    )
    m = re.search(r'data-images="(\d+):(\d+)"', out.stdout)
    assert m, f"chromium produced no marked DOM (rc={out.returncode}): {out.stderr[-2000:]}"
    return int(m.group(1)), int(m.group(2))


@pytest.fixture(scope="module")
def report_html() -> str:
    feat = FeatureConfig(features=("log_return", "hl_range", "volatility_5"), window=5)
    bars = SyntheticProvider(seed=9).fetch(["000001.SH", "600519.SH"], dt.date(2022, 1, 1), dt.date(2023, 6, 30))
    s = Settings(features=feat).replace(train={"test_sessions": 40}, backtest={"retrain_every": 20})
    r = run_backtest(build_features(bars, feat), bars, s, models=["persistence", "rolling_mean", "ridge"])
    rep = render_report(ReportInputs(
        run_date=dt.date(2023, 6, 30), candidate="ridge", bars=bars, predictions=r.predictions,
        forecast=r.forecast, strategy=r.strategy, equity=r.equity,
        decision=decide_promotion("ridge", "v1", r.forecast, "mase"),
    ), dpi=60)
    return rep.html


def test_every_figure_loads_in_headless_chromium(chromium, report_html, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(report_html.replace("</body>", CHECK, 1), encoding="utf-8")
    assert images_loaded(chromium, page, tmp_path / "profile") == (len(FIGURES), len(FIGURES))


def test_a_broken_figure_is_detected(chromium, report_html, tmp_path):
    # the same check on a page with one corrupted image must report it
    broken = re.sub(r"base64,[A-Za-z0-9+/=]{40}", "base64,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", report_html, count=1)
    page = tmp_path / "broken.html"
    page.write_text(broken.replace("</body>", CHECK, 1), encoding="utf-8")
    total, ok = images_loaded(chromium, page, tmp_path / "profile")
    assert total == len(FIGURES) and ok == len(FIGURES) - 1
