// The map: the points of data-points (GeoJSON) as pins coloured by data-colour, clustered at
// national zoom, each with a popup of its figures and links. With no tile server (data-tiles
// empty) or none answering, a plain background with the provinces' names. The table below the
// map holds the same points and needs no script.
"use strict";
(function () {
  var box = document.getElementById("map");
  if (!box || !window.L) { return; }
  var colour = box.getAttribute("data-colour");
  var map = L.map(box, {maxZoom: 18}).setView([13.2, 101.0], 5);
  var labelled = false;

  // The provinces' capitals as dots, their names only from LABEL_ZOOM on (77 names at
  // national zoom cover each other).
  var LABEL_ZOOM = 7;
  // Colour classes from harmless to worst, for the clusters.
  var WORST = ["none", "no_kiosk", "unknown", "good", "online", "fair", "alarm", "poor",
               "offline", "lost"];
  function showNames() { box.classList.toggle("names", map.getZoom() >= LABEL_ZOOM); }
  map.on("zoomend", showNames);

  function provinceLabels(provinces) {
    if (labelled) { return; }
    labelled = true;
    box.classList.add("no-tiles");
    showNames();
    provinces.forEach(function (p) {
      L.marker([p.lat, p.lon], {interactive: false, keyboard: false, icon: L.divIcon(
        {className: "province-label", html: "", iconSize: null})})
        .addTo(map).getElement().textContent = p.name;
    });
  }

  function line(parent, label, value) {
    var row = document.createElement("div");
    row.textContent = label + ": " + (value === null || value === undefined ? "–" : value);
    parent.appendChild(row);
  }

  function popup(p, labels) {
    var div = document.createElement("div");
    div.className = "popup";
    var title = document.createElement("a");
    title.href = p.url;
    title.className = "popup-title";
    title.textContent = p.id + " · " + p.name;
    div.appendChild(title);
    line(div, p.province, p.status_text);
    line(div, labels.visits, p.visits);
    line(div, labels.csat, p.csat);
    line(div, labels.copy, p.copy_request_rate);
    if (p.kiosks.length) {
      var kiosks = document.createElement("div");
      kiosks.textContent = labels.kiosks + ": ";
      p.kiosks.forEach(function (k, i) {
        var a = document.createElement("a");
        a.href = k.url;
        a.textContent = k.id;
        if (i) { kiosks.appendChild(document.createTextNode(", ")); }
        kiosks.appendChild(a);
      });
      div.appendChild(kiosks);
    }
    return div;
  }

  fetch(box.getAttribute("data-points"), {credentials: "same-origin"})
    .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
    .then(function (data) {
      var tiles = box.getAttribute("data-tiles");
      if (tiles) {
        var layer = L.tileLayer(tiles, {maxZoom: 18,
          attribution: box.getAttribute("data-attribution")});
        layer.on("tileerror", function () { provinceLabels(data.provinces); });
        layer.addTo(map);
      } else {
        provinceLabels(data.provinces);
      }
      // A cluster's ring takes the worst colour among its points (at national zoom, where
      // the fleet is failing still shows); its count sits on a neutral disc.
      var cluster = L.markerClusterGroup({chunkedLoading: true, maxClusterRadius: 40,
        iconCreateFunction: function (group) {
          var worst = group.getAllChildMarkers().reduce(function (found, m) {
            return WORST.indexOf(m.options.colour) > WORST.indexOf(found) ? m.options.colour
              : found;
          }, WORST[0]);
          return L.divIcon({className: "marker-cluster cluster pin-" + worst, iconSize: [40, 40],
            html: "<div><span>" + Number(group.getChildCount()) + "</span></div>"});
        }});
      data.features.forEach(function (f) {
        var p = f.properties;
        var c = f.geometry.coordinates;
        var marker = L.marker([c[1], c[0]], {title: p.id, colour: p.colour[colour], icon: L.divIcon(
          {className: "pin pin-" + p.colour[colour], iconSize: [14, 14]})});
        marker.bindPopup(popup(p, data.labels));
        cluster.addLayer(marker);
      });
      map.addLayer(cluster);
      if (data.features.length) { map.fitBounds(cluster.getBounds(), {padding: [20, 20]}); }
      box.setAttribute("data-pins", String(data.features.length));
    })
    .catch(function (error) { box.classList.add("failed"); console.error("map:", error); });
})();
