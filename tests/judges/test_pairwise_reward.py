"""The judge as a reward (RLAIF): P(completion better than the reference) through the judge
cache, and the loopback endpoint a GRPO/RLOO trainer reaches it by (the real openai client
against the fake server on 127.0.0.1; the trainer side is training.rewards.JudgeRewardFn)."""

from __future__ import annotations

import pytest

from data.errors import ConfigError
from judges.config import JudgeConfig
from judges.pairwise_reward import PairwiseJudgeReward, RewardItem
from judges.reward_server import RewardServer
from tests.fakes.openai_server import FakeOpenAIServer, Reply, always, last_user_text
from training.rewards import JudgeRewardFn, load_reward_fn


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")


def test_the_reward_is_p_better_and_a_second_ask_comes_from_the_cache(store) -> None:
    with FakeOpenAIServer(always("A", p_a=0.8)) as server:
        reward = PairwiseJudgeReward(store, JudgeConfig(models=("judge",), base_url=server.url))
        items = [
            RewardItem("How do I boil an egg?", f"Answer {i}: put it in boiling water.", "Ref.")
            for i in range(4)
        ]
        items.append(RewardItem("Anything?", "no reference to compare with", ""))
        first = reward(items)
        assert first[:4] == pytest.approx([0.8] * 4, abs=1e-3) and first[4] == 0.5
        assert server.request_count == 4 and store.count("judge_calls") == 4
        # the completion is shown first (A), the reference second
        assert "Answer 0" in last_user_text(server.requests[0]["body"]).split("Ref.")[0]
        again = reward(items)
        assert again == first and server.request_count == 4  # no call repeated
        assert reward.stats.cache_hits == 4 and reward.stats.calls == 4


def test_without_logprobs_the_verdict_is_the_reward(store) -> None:
    with FakeOpenAIServer(always("B", logprobs=False)) as server:
        reward = PairwiseJudgeReward(store, JudgeConfig(models=("judge",), base_url=server.url))
        assert reward([RewardItem("q", "worse", "better")]) == [0.0]
        server.push(Reply(text="no idea"), Reply(text="still no idea"))
        assert reward([RewardItem("q2", "unclear", "ref")]) == [0.5]  # no verdict: neutral


def test_a_trainer_gets_the_rewards_over_loopback_http(store) -> None:
    with FakeOpenAIServer(always("A", p_a=0.7)) as judge:
        reward = PairwiseJudgeReward(store, JudgeConfig(models=("judge",), base_url=judge.url))
        with RewardServer(reward) as served:
            prompt = "\n\nHuman: Name a colour.\n\nAssistant:"  # the run template's prompt text
            score = load_reward_fn(served.spec, references={prompt: "Blue."})
            assert isinstance(score, JudgeRewardFn)
            assert score([prompt, prompt], [" Red.", " Green."]) == pytest.approx(
                [0.7, 0.7], abs=1e-3
            )
            shown = last_user_text(judge.requests[-1]["body"])
            assert "Name a colour." in shown and "Human:" not in shown and "Blue." in shown
            wrong = JudgeRewardFn(served.spec.rsplit("/", 1)[0] + "/guess", {prompt: "Blue."})
            with pytest.raises(ConfigError, match="answered 404"):
                wrong([prompt], ["x"])
    with pytest.raises(ConfigError, match="cannot be reached"):
        score([prompt], ["x"])  # the owner stopped serving
