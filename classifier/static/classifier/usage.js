/* The staff usage dashboard's charts, drawn with the vendored Chart.js from the page's JSON. */
"use strict";

(function () {
  const data = JSON.parse(document.getElementById("usage-data").textContent);
  const palette = ["#417690", "#e07b39", "#5b9e4d", "#b54a7a", "#7a6bbf", "#c9a227", "#3c9fa6", "#8c5a3c", "#888888"];
  const statusColour = (code) => ({"2": "#5b9e4d", "3": "#3c9fa6", "4": "#e07b39", "5": "#b54a7a"})[code[0]] || "#888888";
  Chart.defaults.animation = false;  // draw at once: the page is read, not watched

  function bucketLabel(iso) {
    const date = new Date(iso);
    const day = date.toISOString().slice(0, 10);
    return data.bucket === "hour" ? `${day} ${date.toISOString().slice(11, 16)}` : day;
  }

  new Chart(document.getElementById("requests-chart"), {
    type: "bar",
    data: {
      labels: data.starts.map(bucketLabel),
      datasets: data.series.map((series, i) => ({
        label: series.label,
        data: series.counts,
        backgroundColor: palette[i % palette.length],
      })),
    },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      scales: {x: {stacked: true}, y: {stacked: true, beginAtZero: true, ticks: {precision: 0}}},
      plugins: {legend: {position: "bottom"}},
    },
  });

  const codes = Object.keys(data.status_mix);
  new Chart(document.getElementById("status-chart"), {
    type: "doughnut",
    data: {
      labels: codes,
      datasets: [{data: codes.map((code) => data.status_mix[code]), backgroundColor: codes.map(statusColour)}],
    },
    options: {responsive: true, maintainAspectRatio: false, plugins: {legend: {position: "bottom"}}},
  });
})();
