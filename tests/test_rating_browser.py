"""``cascade rate`` in a real browser: a rater answers 6 pairs in headless Chromium, and the database holds 6
votes whose answers, once the random sides are undone, name the models the rater saw on each side; a reload
resumes where the rater stopped."""

import hashlib
import random
import urllib.request

from cascade.rating.server import create_app, serving
from cascade.rating.store import VoteStore, read_study_votes, undo_sides
from cascade.rating.study import load_study
from cascade.testing.study_folders import write_study_folders

from browser import chromium, free_port, save_screenshot, screenshot_folder


def test_a_rater_answers_six_pairs_in_the_browser(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    study = load_study(*write_study_folders(tmp_path / "study", 8, frames=8, size=32))
    store = VoteStore(tmp_path / "votes.sqlite")
    app = create_app(study, store, check_share=0.0, seed=0)
    rng, answered = random.Random(0), []
    with serving(app, "127.0.0.1", free_port()) as base_url, chromium() as browser:
        browser.get(base_url)
        for index in range(6):
            WebDriverWait(browser, 30).until(
                lambda b: (
                    b.find_element(By.ID, "vote").get_attribute("data-pair")
                    not in (None, *[a[0] for a in answered])
                    and b.find_element(By.ID, "vote").is_displayed()
                )
            )
            pair = browser.find_element(By.ID, "vote").get_attribute("data-pair")
            with urllib.request.urlopen(browser.find_element(By.ID, "left").get_attribute("src")) as response:
                left_sha256 = hashlib.sha256(response.read()).hexdigest()
            quality, text = rng.choice(["left", "right", "same"]), rng.choice(["left", "right", "same"])
            browser.find_element(By.CSS_SELECTOR, f"input[name=quality][value={quality}]").click()
            browser.find_element(By.CSS_SELECTOR, f"input[name=text][value={text}]").click()
            if index == 5:
                shot = save_screenshot(browser, screenshot_folder(tmp_path) / "rate.png")
            browser.find_element(By.ID, "submit").click()
            answered.append((pair, quality, text, left_sha256))
        WebDriverWait(browser, 30).until(
            lambda b: "Prompts rated: 6 of 8" in b.find_element(By.ID, "count").text
        )
        rater = browser.execute_script("return localStorage.getItem('cascade-rate-rater')")
        browser.refresh()  # the same rater resumes: 6 rated, and a pair not rated yet
        WebDriverWait(browser, 30).until(
            lambda b: "Prompts rated: 6 of 8" in b.find_element(By.ID, "count").text
        )
        assert browser.find_element(By.ID, "vote").get_attribute("data-pair") not in [a[0] for a in answered]
    _, votes = read_study_votes(store.path)
    assert len(votes) == 6 and {vote["rater"] for vote in votes} == {rater}
    stored = {vote["assignment_id"]: vote for vote in votes}
    for pair, quality, text, left_sha256 in answered:
        vote = stored[pair]
        # The model the database says was on the left is the file the browser played on the left.
        assert left_sha256 == vote["a_sha256" if vote["left_shown"] == "A" else "b_sha256"]
        assert (vote["quality_side"], vote["text_side"]) == (quality, text)
        assert vote["quality_choice"] == undo_sides(quality, vote["left_shown"])
        assert vote["text_choice"] == undo_sides(text, vote["left_shown"])
    assert len({vote["prompt_index"] for vote in votes}) == 6 and 0 < shot.stat().st_size < 500_000
