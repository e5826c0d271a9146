// Stripe Payment Element: the card fields live in Stripe's frames; we only see the result.
(function () {
  "use strict";
  var form = document.getElementById("stripe-form");
  if (!form || typeof window.Stripe !== "function") return;
  var options = {};
  if (form.dataset.stripeAccount) options.stripeAccount = form.dataset.stripeAccount;
  var stripe = window.Stripe(form.dataset.publishableKey, options);
  var elements = stripe.elements({ clientSecret: form.dataset.clientSecret });
  elements.create("payment").mount("#payment-element");
  var errorBox = document.getElementById("stripe-error");
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    stripe.confirmPayment({ elements: elements, confirmParams: { return_url: form.dataset.returnUrl } })
      .then(function (result) {
        if (result.error) {
          errorBox.textContent = result.error.message;
          errorBox.hidden = false;
        }
      });
  });
})();
