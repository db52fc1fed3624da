// Plays a ladder in hls.js, dash.js or shaka-player, one rung after the other: window.check(case).
const LIBRARIES = {
  'hls.js': '/players/hls.js/dist/hls.min.js',
  'dash.js': '/players/dashjs/dist/modern/umd/dash.all.min.js',
  shaka: '/players/shaka-player/dist/shaka-player.compiled.js',
};

function script(src) {
  return new Promise((resolve, reject) => {
    const tag = Object.assign(document.createElement('script'), {src, onload: resolve});
    tag.onerror = () => reject(new Error(`cannot load ${src}: run ./bootstrap.sh test`));
    document.head.append(tag);
  });
}

function state(video) {
  const buffered = Array.from({length: video.buffered.length},
                              (_, i) => `${video.buffered.start(i).toFixed(2)}-${video.buffered.end(i).toFixed(2)}`);
  return `at ${video.currentTime.toFixed(2)} s showing ${video.videoWidth}x${video.videoHeight}, ` +
         `buffered ${buffered.join(' ') || 'nothing'}, readyState ${video.readyState}${video.ended ? ', ended' : ''}`;
}

function until(video, test, seconds, what) {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const poll = () => {
      if (test()) resolve();
      else if (performance.now() - started > seconds * 1000) {
        reject(new Error(`no ${what} after ${seconds} s (${state(video)})`));
      } else setTimeout(poll, 50);
    };
    poll();
  });
}

// Each opens `url` in `video` and answers its video tracks, `force(index)` (that track only,
// ABR off), what it says of the audio, and `iframes()` (what it made of I-frame playlists).
const PLAYERS = {
  async 'hls.js'(video, url, errors) {
    const hls = new Hls();
    hls.on(Hls.Events.ERROR, (_, d) => errors.push(`hls.js ${d.type} ${d.details}${d.fatal ? ' (fatal)' : ''}`));
    const parsed = new Promise((resolve) => hls.once(Hls.Events.MANIFEST_PARSED, resolve));
    hls.loadSource(url);
    hls.attachMedia(video);
    await parsed;
    return {
      tracks: hls.levels.map((l) => ({width: l.width, height: l.height})),
      force: (index) => { hls.currentLevel = index; },
      audio: () => ({tracks: hls.audioTracks.length, codecs: hls.levels.map((l) => l.audioCodec)}),
      iframes: () => hlsIFrames(hls, errors),
    };
  },

  async 'dash.js'(video, url, errors) {
    const player = dashjs.MediaPlayer().create();
    const events = dashjs.MediaPlayer.events;
    player.updateSettings({streaming: {abr: {autoSwitchBitrate: {video: false}}}});
    for (const name of [events.ERROR, events.PLAYBACK_ERROR]) {
      player.on(name, (e) => errors.push(`dash.js ${e.type} ${JSON.stringify(e.error ?? e)}`));
    }
    const ready = new Promise((resolve) => player.on(events.STREAM_INITIALIZED, resolve));
    player.initialize(video, url, false);
    await ready;
    return {
      tracks: player.getRepresentationsByType('video').map((r) => ({width: r.width, height: r.height})),
      force: (index) => player.setRepresentationForTypeByIndex('video', index, true),
      audio: () => ({tracks: player.getTracksFor('audio').length,
                     codecs: player.getTracksFor('audio').map((t) => t.codec)}),
    };
  },

  async shaka(video, url, errors) {
    shaka.polyfill.installAll();
    const player = new shaka.Player();
    player.addEventListener('error', (e) => errors.push(`shaka ${e.detail.code} ${JSON.stringify(e.detail.data)}`));
    await player.attach(video);
    player.configure({abr: {enabled: false}, streaming: {bufferingGoal: 2}}); // short: fast-forward fetches I-frames
    await player.load(url);
    const variants = player.getVariantTracks().sort((a, b) => a.bandwidth - b.bandwidth);
    return {
      tracks: variants.map((t) => ({width: t.width, height: t.height})),
      force: (index) => player.selectVariantTrack(variants[index], true),
      audio: () => ({tracks: player.getAudioTracks().length, codecs: variants.map((t) => t.audioCodec)}),
      iframes: () => shakaIFrames(player, video),
    };
  },
};

// hls.js's I-frame player (createIFramePlayer), in the second video element, shows a key frame
// of each I-frame variant in turn (at 1.5, 3.5, 5.5 s ...).
async function hlsIFrames(hls, errors) {
  const frames = document.getElementById('iframes');
  const player = hls.createIFramePlayer();
  if (!player) throw new Error('hls.js made no I-frame player: it found no I-frame variant');
  player.on(Hls.Events.ERROR, (_, d) => errors.push(`hls.js I-frames ${d.type} ${d.details}${d.fatal ? ' (fatal)' : ''}`));
  const attached = new Promise((resolve) => player.once(Hls.Events.MEDIA_ATTACHED, resolve));
  player.attachMedia(frames);
  await attached;
  const shown = [];
  for (const [index, level] of player.levels.entries()) {
    const time = 2 * index + 1.5;
    player.currentLevel = index;
    player.loadMediaAt(time);
    await until(frames, () => frames.readyState >= 2 && frames.videoHeight === level.height &&
                              Math.abs(frames.currentTime - time) < 0.5, 20, `I-frame ${level.width}x${level.height} at ${time} s`);
    shown.push({size: [frames.videoWidth, frames.videoHeight], time});
  }
  return {tracks: hls.iframeVariants.map((v) => ({width: v.width, height: v.height, codecs: v.videoCodec})), shown};
}

// shaka-player makes each I-frame playlist its variant's trick-mode track and fast-forwards on
// it (trickPlay) from the start, past what was buffered.
async function shakaIFrames(player, video) {
  const tracks = player.getManifest().variants.map((v) => v.video && v.video.trickModeVideo).filter(Boolean)
    .map((s) => ({width: s.width, height: s.height, codecs: s.codecs, iframesOnly: s.isIframe}));
  video.currentTime = 0;
  player.trickPlay(4);
  await until(video, () => video.currentTime >= 8, 20, 'fast forward to 8 s');
  player.cancelTrickPlay();
  return {tracks, fastForwardTo: video.currentTime};
}

window.check = async ({player, url, rungs, iframes}) => {
  const video = document.getElementById('main');
  const errors = [];
  const result = {player, url, errors, rungs: []};
  video.addEventListener('error', () => errors.push(`video element: ${video.error && video.error.message}`));
  try {
    await script(LIBRARIES[player]);
    const opened = await PLAYERS[player](video, url, errors);
    result.tracks = opened.tracks;
    for (const {size: [width, height], picture: [shownWidth, shownHeight]} of rungs) {
      const index = opened.tracks.findIndex((t) => t.width === width && t.height === height);
      if (index < 0) throw new Error(`${player} lists no ${width}x${height} track`);
      opened.force(index);
      await video.play();
      await until(video, () => video.videoWidth === shownWidth && video.videoHeight === shownHeight, 20,
                  `${shownWidth}x${shownHeight} picture of the ${width}x${height} track`);
      const from = video.currentTime;
      await until(video, () => video.currentTime >= from + 1, 20, `second of playback from ${from.toFixed(2)} s`);
      result.rungs.push({size: [width, height], from, to: video.currentTime, shown: [video.videoWidth, video.videoHeight]});
    }
    result.audio = {...opened.audio(), decodedBytes: video.webkitAudioDecodedByteCount};
    if (iframes) result.iframes = await opened.iframes();
  } catch (e) {
    errors.push(String((e && e.stack) || e));
  }
  return result;
};
