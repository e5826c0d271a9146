// Braintree Drop-in with 3D Secure: we receive a nonce and device data, never card numbers.
(function () {
  "use strict";
  var form = document.getElementById("braintree-form");
  if (!form || !window.braintree) return;
  window.braintree.dropin.create({
    authorization: form.dataset.clientToken,
    container: "#dropin-container",
    threeDSecure: true,
    dataCollector: true
  }, function (createError, dropin) {
    if (createError) return;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      dropin.requestPaymentMethod({
        threeDSecure: { amount: form.dataset.amount }
      }, function (err, payload) {
        if (err) return;
        document.getElementById("payment-method-nonce").value = payload.nonce;
        document.getElementById("device-data").value = payload.deviceData || "";
        form.submit();
      });
    });
  });
})();
