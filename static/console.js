// 党建云平台 console: confirmation dialogs, live progress and the check-in code. Same origin only (CSP script-src 'self').
(function () {
  'use strict';
  var dialog = document.getElementById('confirm-dialog');
  var pending = null;
  document.addEventListener('submit', function (ev) {
    var form = ev.target;
    var msg = form.getAttribute('data-confirm');
    if (!msg || form.dataset.confirmed === '1' || !dialog || typeof dialog.showModal !== 'function') return;
    ev.preventDefault();
    pending = form;
    dialog.querySelector('.confirm-text').textContent = msg;
    dialog.showModal();
  });
  if (dialog) {
    dialog.addEventListener('close', function () {
      if (dialog.returnValue === 'ok' && pending) {
        pending.dataset.confirmed = '1';
        if (pending.requestSubmit) pending.requestSubmit(); else pending.submit();
      }
      pending = null;
    });
  }
  // <button data-print>: the browser's print dialog (the dues ledger has a print stylesheet).
  document.addEventListener('click', function (ev) {
    if (ev.target.closest && ev.target.closest('[data-print]')) window.print();
  });
  // <input type=file data-fill="ID">: the chosen text file goes into textarea #ID (the form posts
  // the text; without JS the text can be pasted).
  document.querySelectorAll('input[type=file][data-fill]').forEach(function (input) {
    input.addEventListener('change', function () {
      var target = document.getElementById(input.getAttribute('data-fill'));
      var file = input.files && input.files[0];
      if (!target || !file) return;
      var reader = new FileReader();
      reader.onload = function () { target.value = String(reader.result).replace(/^\uFEFF/, ''); };
      reader.readAsText(file, 'utf-8');
    });
  });
  // A long form submit (the roster import): the button says it is working and is not pressed twice.
  document.addEventListener('submit', function (ev) {
    var busy = ev.target.querySelector && ev.target.querySelector('button[data-busy]');
    if (busy && !ev.defaultPrevented) { busy.disabled = true; busy.textContent = busy.getAttribute('data-busy'); }
  });
  // The follower sync's progress: <div id="follower-sync" data-running="true|false">; polls the
  // admin API every second while a sync runs.
  var sync = document.getElementById('follower-sync');
  if (sync) {
    var syncPoll = function () {
      fetch('/api/admin/wechat/followers/sync', {
        credentials: 'same-origin', headers: { 'Accept': 'application/json' }
      }).then(function (r) { return r.ok ? r.json() : null; }).then(function (p) {
        if (!p) return;
        sync.querySelector('.state').textContent = p.running ? '同步中' : '空闲';
        sync.querySelector('.seen').textContent = p.seen;
        sync.querySelector('.total').textContent = p.total ? ' / ' + p.total : '';
        sync.querySelector('.subscribed').textContent = p.subscribed;
        var pct = p.total ? Math.min(100, Math.floor(p.seen * 100 / p.total)) : (p.running ? 0 : 100);
        sync.querySelector('.progress > div').style.width = pct + '%';
        var start = document.getElementById('follower-sync-start');
        if (start) start.disabled = !!p.running;
        if (p.running) setTimeout(syncPoll, 1000);
      });
    };
    if (sync.getAttribute('data-running') === 'true') setTimeout(syncPoll, 1000);
  }
  // A push's progress: <div id="push-progress" data-push="ID" data-state="...">; polls the admin API.
  var box = document.getElementById('push-progress');
  if (box) {
    var done = ['completed', 'cancelled', 'failed'];
    var shown = box.getAttribute('data-state');
    var labels = { scheduled: '已排期', running: '发送中', paused: '已暂停', completed: '已完成', cancelled: '已取消', failed: '失败' };
    var poll = function () {
      fetch('/api/admin/pushes/' + encodeURIComponent(box.getAttribute('data-push')), {
        credentials: 'same-origin', headers: { 'Accept': 'application/json' }
      }).then(function (r) { return r.ok ? r.json() : null; }).then(function (p) {
        if (!p) return;
        var counts = p.counts || {};
        var total = 0, finished = 0;
        Object.keys(counts).forEach(function (k) {
          total += counts[k];
          if (k !== 'pending' && k !== 'in_flight') finished += counts[k];
          var cell = box.querySelector('[data-count="' + k + '"]');
          if (cell) cell.textContent = counts[k];
        });
        var pct = total ? Math.round(finished * 100 / total) : (done.indexOf(p.status) >= 0 ? 100 : 0);
        box.querySelector('.progress > div').style.width = pct + '%';
        box.querySelector('.pct').textContent = pct + '%';
        box.querySelector('.state').textContent = labels[p.status] || p.status;
        if (p.status !== shown && done.indexOf(p.status) >= 0) {
          // Finished: the page again from the server, with its badge and the actions that apply.
          window.location.reload();
          return;
        }
        if (done.indexOf(p.status) < 0) setTimeout(poll, 1500);
      }).catch(function () { setTimeout(poll, 5000); });
    };
    poll();
  }
  // The venue's check-in code: <div id="checkin-qr" data-activity="ID">. A ticket lasts two
  // 30-second windows, so a fresh code every 20 s keeps the one on screen valid.
  var qr = document.getElementById('checkin-qr');
  if (qr) {
    var note = document.getElementById('checkin-status');
    var say = function (text) { if (note) note.textContent = text; };
    var refresh = function () {
      fetch('/api/admin/activities/' + encodeURIComponent(qr.getAttribute('data-activity')) + '/checkin-code', {
        credentials: 'same-origin', headers: { 'Accept': 'application/json' }
      }).then(function (r) { return r.ok ? r.json() : null; }).then(function (c) {
        if (!c || !c.svg) { say('二维码更新失败，正在重试…'); return; }
        var svg = new DOMParser().parseFromString(c.svg, 'image/svg+xml').documentElement;
        if (!svg || svg.nodeName.toLowerCase() !== 'svg') { say('二维码更新失败，正在重试…'); return; }
        qr.replaceChildren(document.importNode(svg, true));
        say('本码有效至 ' + String(c.expires_at).slice(11, 19));
      }).catch(function () { say('网络中断，正在重试…'); });
    };
    setInterval(refresh, 20000);
  }
})();
