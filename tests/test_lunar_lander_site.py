"""LunarLanderSite-v0, the paper's Lunar Lander (sec. 5.1): a landing site drawn per episode, six
actions, 9 observations, success between the site's flags, gymnasium's dynamics."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.box2d.lunar_lander import LunarLander, heuristic

from sqil_lightning import DemoSet  # importing the package registers the env id
from sqil_lightning.cli import lightning_main
from sqil_lightning.demos.experts import expert_env_id, make_expert
from sqil_lightning.envs.make import LunarLanderSuccess, env_spaces, has_success, make_gym_env
from sqil_lightning.envs.policy_evaluation import evaluate_policy
from sqil_lightning.errors import ConfigError
from sqil_lightning.envs.lunar_lander_site import CENTRE_CHUNK, CHUNK_X, ENV_ID, SITE_CHUNKS, LunarLanderSite

from fit_process import REPO

# The action table the env promises, written out here rather than imported: index ->
# gymnasium continuous command [main (-1 off, +1 full), lateral (-1 left, 0 none, +1 right)].
ENGINES = {0: (-1.0, 0.0), 1: (-1.0, -1.0), 2: (1.0, 0.0), 3: (-1.0, 1.0), 4: (1.0, -1.0), 5: (1.0, 1.0)}
_DISCRETE = SimpleNamespace(unwrapped=SimpleNamespace(continuous=False))  # for gymnasium's heuristic


def _ground(env: LunarLanderSite) -> list[tuple[float, float]]:
    """The terrain's vertices (x, y) at the 11 chunks, read from the physics body."""
    edges = [f.shape.vertices for f in env.moon.fixtures]
    edges = [e for e in edges if e != [(0.0, 0.0), (CHUNK_X[-1], 0.0)]]  # the bottom edge
    return sorted({tuple(map(float, v)) for e in edges for v in e})


def _land(env: gym.Env, obs: np.ndarray, aim: float = 0.0):
    """Fly gymnasium's heuristic on the first 8 values, aiming ``aim`` (x units) from the site."""
    while True:
        target = obs[:8].copy()
        target[0] -= aim
        obs, reward, terminated, truncated, info = env.step(heuristic(_DISCRETE, target))
        if terminated or truncated:
            return obs, reward, info


def test_registered_on_import_with_gymnasiums_time_limit_and_success():
    spec = gym.spec(ENV_ID)
    assert "LunarLander" in ENV_ID and spec.max_episode_steps == 1000
    assert has_success(ENV_ID)
    env = make_gym_env(ENV_ID)
    assert isinstance(env, LunarLanderSuccess) and isinstance(env.unwrapped, LunarLanderSite)
    env.close()


def test_observation_and_action_spaces():
    env = LunarLanderSite()
    gym_space = LunarLander().observation_space
    assert env.action_space == gym.spaces.Discrete(6)
    space = env.observation_space
    assert space.shape == (9,) and space.dtype == np.float32
    np.testing.assert_array_equal(space.low[:8], gym_space.low)
    np.testing.assert_array_equal(space.high[:8], gym_space.high)
    assert (space.low[8], space.high[8]) == (np.float32(-0.6), np.float32(0.6))  # sites at chunks 2..8
    assert env_spaces(ENV_ID).observation_shape == (9,) and env_spaces(ENV_ID).num_actions == 6
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        assert obs.dtype == np.float32 and space.contains(obs)
        for action in range(6):
            assert space.contains(env.step(action)[0])
    with pytest.raises(ValueError):
        env.step(6)
    copy = pickle.loads(pickle.dumps(env))  # EzPickle rebuilds it from its own arguments
    assert copy.action_space.n == 6 and copy.continuous


def test_site_changes_with_the_seed_and_is_reproducible():
    env = LunarLanderSite()
    sites = []
    for seed in range(30):
        obs, _ = env.reset(seed=seed)
        assert env.site_chunk in SITE_CHUNKS
        assert obs[8] == np.float32((CHUNK_X[env.site_chunk] - 10.0) / 10.0)  # site x, screen-normalised
        assert (env.helipad_x1, env.helipad_x2) == (CHUNK_X[env.site_chunk - 1], CHUNK_X[env.site_chunk + 1])
        sites.append(env.site_chunk)
    assert len(set(sites)) >= 5  # 7 possible sites, uniform: 30 seeds reach most of them

    def episode(seed, env):
        obs = [env.reset(seed=seed)[0]]
        obs += [env.step(a)[0] for a in [2, 4, 5, 0, 1, 3] * 5]
        return env.site_chunk, _ground(env), np.stack(obs)

    again = episode(7, LunarLanderSite())  # a fresh env and one that played other seeds agree
    first = episode(7, env)
    assert first[0] == again[0] and first[1] == again[1]
    np.testing.assert_array_equal(first[2], again[2])
    other = next(s for s in range(8, 40) if episode(s, env)[0] != first[0])
    assert episode(other, env)[1] != first[1]


def test_site_is_flat_with_flags_and_the_old_centre_is_rough():
    env = LunarLanderSite()
    env.reset(seed=3, options={"site": CENTRE_CHUNK})
    centre = _ground(env)
    obs_centre = env.step(0)[0]
    env.reset(seed=3, options={"site": 2})
    moved = _ground(env)
    obs_moved = env.step(0)[0]
    ys = [y for _, y in moved]
    assert ys[1] == ys[2] == ys[3] == pytest.approx(0.99 * env.helipad_y)  # flat around the site (chunk 2)
    assert (env.helipad_x1, env.helipad_x2) == (CHUNK_X[1], CHUNK_X[3])  # flags: x = 2 and 6
    assert len({ys[4], ys[5], ys[6]}) == 3  # gymnasium's pad (chunks 4..6) is gone
    assert [y for _, y in centre][4:7] == [pytest.approx(0.99 * env.helipad_y)] * 3
    assert moved[9:] == centre[9:]  # elsewhere the terrain is gymnasium's own draw
    # The lander flies the same in both (forcing a site draws nothing); only x's origin moved.
    assert obs_moved[0] - obs_centre[0] == pytest.approx((CHUNK_X[CENTRE_CHUNK] - CHUNK_X[2]) / 10.0)
    np.testing.assert_array_equal(obs_moved[1:8], obs_centre[1:8])
    assert (obs_centre[8], obs_moved[8]) == (0.0, np.float32(-0.6))


@pytest.mark.parametrize("site", [1, 9, 5.0, True, "centre"])
def test_a_forced_site_must_be_a_site_chunk(site):
    with pytest.raises(ConfigError, match="site"):
        LunarLanderSite().reset(seed=0, options={"site": site})


def test_actions_0_to_3_are_gymnasiums_discrete_actions_at_the_centre():
    """gymnasium's heuristic lands both: observations 0..7, rewards and termination identical."""
    env, ref = LunarLanderSite(), LunarLander()
    for seed in (3, 11):
        obs, _ = env.reset(seed=seed, options={"site": CENTRE_CHUNK})
        ref_obs, _ = ref.reset(seed=seed)
        np.testing.assert_array_equal(obs[:8], ref_obs)
        terminated = False
        while not terminated:
            action = heuristic(ref, ref_obs)
            obs, reward, terminated, _, _ = env.step(action)
            ref_obs, ref_reward, ref_terminated, _, _ = ref.step(action)
            np.testing.assert_array_equal(obs[:8], ref_obs)
            assert reward == ref_reward and terminated == ref_terminated
        assert reward == 100  # it landed: the terminal reward is gymnasium's too


def test_all_six_actions_fire_gymnasiums_engines_at_the_centre():
    """Each action is gymnasium's continuous command of ``ENGINES``, main and side together."""
    env, ref = LunarLanderSite(), LunarLander(continuous=True)
    rng = np.random.default_rng(0)
    for seed in (4, 5):
        obs, _ = env.reset(seed=seed, options={"site": CENTRE_CHUNK})
        ref_obs, _ = ref.reset(seed=seed)
        seen, terminated = set(), False
        while not terminated:
            action = int(rng.integers(6))
            seen.add(action)
            obs, reward, terminated, _, _ = env.step(action)
            ref_obs, ref_reward, ref_terminated, _, _ = ref.step(np.array(ENGINES[action]))
            np.testing.assert_array_equal(obs[:8], ref_obs)
            assert reward == ref_reward and terminated == ref_terminated
        assert seen == set(range(6))


def test_what_each_action_does():
    """From one state, three steps of each action: the main engine pushes the lander up; the left
    engine turns it counter-clockwise, the right one clockwise (gymnasium's side engines); 4 and 5
    do both."""
    env = LunarLanderSite()
    after = {}
    for action in range(6):
        env.reset(seed=1, options={"site": 4})
        for _ in range(3):
            obs = env.step(action)[0]
        after[action] = (obs[3], obs[5])  # vertical velocity, angular velocity
    vy0, w0 = after[0]
    for action, (main, side) in ENGINES.items():
        vy, w = after[action]
        # main: +0.12 (side engines alone change it by < 0.001)
        assert (vy - vy0 > 0.05) if main > 0 else (abs(vy - vy0) < 0.01), action
        # side: +0.13 left, -0.11 right (the main engine's dispersion alone: 0.02)
        turn = 0 if abs(w - w0) < 0.05 else int(np.sign(w - w0))
        assert turn == -side, action


def test_reward_shaping_measures_the_distance_to_the_site():
    """Same flight, two sites: the rewards differ by the change of 100 x distance to each site."""
    runs = {}
    for site in (3, 7):
        env = LunarLanderSite()
        obs = [env.reset(seed=2, options={"site": site})[0]]
        rewards = []
        for action in [2, 4, 0, 5, 1, 3, 2, 0] * 4:  # 32 steps: still in the air
            o, r, terminated, _, _ = env.step(action)
            assert not terminated
            obs.append(o)
            rewards.append(r)
        runs[site] = (np.stack(obs).astype(np.float64), np.array(rewards))
    (obs3, r3), (obs7, r7) = runs[3], runs[7]
    np.testing.assert_array_equal(obs3[:, 1:8], obs7[:, 1:8])
    distance = {site: np.hypot(o[:, 0], o[:, 1]) for site, (o, _) in runs.items()}
    expected = -100 * np.diff(distance[3]) + 100 * np.diff(distance[7])
    np.testing.assert_allclose(r3 - r7, expected, atol=1e-4)
    assert abs(r3.sum() - r7.sum()) > 1  # the sites are 8 units apart: it matters


def test_success_is_at_rest_between_the_sites_flags():
    env = make_gym_env(ENV_ID)
    for site in (2, 8):  # far from the centre: |screen x| > 0.2 where it lands
        obs, _ = env.reset(seed=0, options={"site": site})
        obs, reward, info = _land(env, obs)
        screen_x = (env.unwrapped.lander.position.x - 10.0) / 10.0
        assert abs(obs[0]) <= 0.2 and abs(screen_x) > 0.4 and reward == 100
        assert info["success"]
    # At rest (gymnasium's +100) but 0.29 from the site: outside its flags, no success.
    obs, _ = env.reset(seed=2, options={"site": 7})
    obs, reward, info = _land(env, obs, aim=0.35)
    lander = env.unwrapped
    assert reward == 100 and not lander.game_over and not lander.lander.awake
    assert obs[0] > 0.25 and not info["success"]
    env.close()


def test_render_draws_the_flags_at_the_site():
    pytest.importorskip("pygame")
    env = LunarLanderSite(render_mode="rgb_array")
    env.reset(seed=0, options={"site": 2})
    frame = env.render()
    env.close()
    flag = np.all(frame == np.array([204, 204, 0], dtype=np.uint8), axis=-1)  # gymnasium's flag colour
    columns = set(np.nonzero(flag.any(axis=0))[0].tolist())
    poles = [round(x * 30) for x in (CHUNK_X[1], CHUNK_X[3])]  # 60 and 180 pixels
    assert columns and all(any(p <= c <= p + 25 for p in poles) for c in columns)
    assert {p + 1 for p in poles} <= columns


def test_the_scripted_site_expert_lands_on_sites_across_the_ground():
    expert = make_expert("lunarlander_site_scripted")
    assert expert_env_id("lunarlander_site_scripted") == ENV_ID
    result = evaluate_policy(ENV_ID, expert, 20, 1000000)
    landed_sites = set()
    env = make_gym_env(ENV_ID)
    for i, success in enumerate(result.successes):
        if success:
            landed_sites.add(round(float(env.reset(seed=1000000 + i)[0][8]), 1))
    env.close()
    assert result.success_rate >= 0.7  # 0.81 of the 100 evaluation episodes
    assert len(landed_sites) >= 4  # between the flags of sites far left, far right and between


def test_the_readmes_two_commands_train_the_deep_q_expert_then_sqil_on_its_demos(tmp_path, monkeypatch):
    """The README's two commands on a fresh checkout, at tiny budgets: the expert overlay keeps its
    best evaluation where conf/lunarlander_site.yaml's demo_expert looks, and the SQIL fit records
    its demos from that checkpoint on first use."""
    tiny = [
        "--trainer.max_steps", "40", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--wandb.mode", "disabled",
        "--data.initial_env_steps", "200", "--data.batch_size", "32", "--model.init_args.hidden_sizes", "[16,16]",
        "--evaluation.episodes", "1", "--evaluation.final_episodes", "1", "--evaluation.video_every_n_evaluations", "0",
    ]  # fmt: skip
    task = ["fit", "--config", str(REPO / "conf" / "lunarlander_site.yaml")]
    monkeypatch.chdir(tmp_path)
    expert_overlay = ["--config", str(REPO / "conf" / "experts" / "lunarlander_site.yaml")]
    lightning_main([*task, *expert_overlay, *tiny, "--evaluation.every_n_steps", "20", "--checkpoint.every_n_train_steps", "20"], run=True)
    expert = tmp_path / "experts" / ENV_ID / "best.ckpt"
    assert expert.is_file()

    lightning_main([*task, *tiny, "--data.demo_episodes", "2"], run=True)
    (demo_file,) = (tmp_path / "demos").glob("*.npz")
    demos = DemoSet.load(demo_file)
    assert demos.metadata["env_id"] == ENV_ID and demos.num_episodes == 2
    assert demos.metadata["source"].startswith(f"checkpoint experts/{ENV_ID}/best.ckpt")  # the overlay's expert
    assert demos.observations.shape[1:] == (9,)
    assert list((tmp_path / "runs" / "lunarlander_site").glob("version_0/checkpoints/last.ckpt"))
